"""Can sparse kernels remove SHiRA's extra GEMM? Times, per layer shape at the Qwen3-8B width (8192 tokens, bf16),
the dense products SHiRA's fast path runs against cuSPARSE's sparse ones at SHiRA's density (r·(d_in+d_out) entries).

    python bench/shira_sparse.py            # on a GPU; prints a markdown table of milliseconds

A hook sees the base output x W0ᵀ already computed, so lora-lite's SHiRA pays x ΔWᵀ (forward) and (gᵀx) at the mask
(backward) on top of the base's products; PEFT pays one dense ∂W instead. A sparse forward (SpMM) or a sampled
backward (SDDMM) would only close that gap if it were cheaper than the dense GEMM it replaces.
"""
import argparse, statistics, torch


def timed(f, reps=20):
    "Median milliseconds of `f()` over `reps` CUDA-event timed calls (after 3 warm-up calls); None if it raises."
    try:
        for _ in range(3): f()
    except (RuntimeError, NotImplementedError) as e: return f"n/a ({str(e).splitlines()[0][:50]})"
    ms = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); f(); b.record(); b.synchronize(); ms.append(a.elapsed_time(b))
    return f"{statistics.median(ms):.3f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--tokens', type=int, default=8192)
    p.add_argument('--r', type=int, default=16)
    a = p.parse_args()
    dev, T = torch.device('cuda'), a.tokens
    print(f"| d_out×d_in | density | dense x ΔWᵀ bf16 | SpMM bf16 | SpMM fp32 | dense (gᵀx)[mask] bf16 | SDDMM bf16 | SDDMM fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for d_out, d_in in ((4096, 4096), (1024, 4096), (12288, 4096), (4096, 12288)):
        n = a.r * (d_in + d_out)
        idx = torch.randperm(d_out * d_in, device=dev)[:n].sort().values
        rows, cols = idx // d_in, idx % d_in
        v = torch.randn(n, device=dev)
        x = torch.randn(T, d_in, device=dev, dtype=torch.bfloat16)
        g = torch.randn(T, d_out, device=dev, dtype=torch.bfloat16)
        dense = torch.zeros(d_out, d_in, device=dev, dtype=torch.bfloat16).index_put_((rows, cols), v.bfloat16())
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), v, (d_out, d_in)).coalesce()
        csr32, csr16 = coo.to_sparse_csr(), coo.bfloat16().to_sparse_csr()
        xt32, xt16 = x.float().t().contiguous(), x.t().contiguous()
        gt32, gt16 = g.float().t().contiguous(), g.t().contiguous()
        x32 = x.float()
        cells = [
            timed(lambda: x @ dense.t()),
            timed(lambda: torch.sparse.mm(csr16, xt16)),
            timed(lambda: torch.sparse.mm(csr32, xt32)),
            timed(lambda: (g.t() @ x)[rows, cols]),
            timed(lambda: torch.sparse.sampled_addmm(csr16, gt16, x, beta=0.0)),
            timed(lambda: torch.sparse.sampled_addmm(csr32, gt32, x32, beta=0.0)),
        ]
        print(f"| {d_out}×{d_in} | {n / (d_in * d_out):.2%} | " + " | ".join(cells) + " |")


if __name__ == '__main__':
    main()
