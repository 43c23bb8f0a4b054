"""OFT's rotation on one layer-sized input: the exact Cayley map against the Cayley–Neumann series, and PEFT's forms.

Forward+backward of `x -> R x` (block-diagonal, blocks of 32) for 8192 tokens at widths 4096 and 12288
(the Qwen3-8B projections' inputs), and of the parameter path alone (`q -> R`, backward included), so the
cost of the inverse is visible next to the activation-sized `bmm`s. Device time by CUDA events (median
of N), host time of the launches back to back. Prints a markdown table.

    python bench/oft_rotation.py            # needs a GPU
    python bench/oft_rotation.py --device cpu --tokens 256 --iters 5   # checks the script runs
"""
from __future__ import annotations
import argparse, os, statistics, sys, time
import torch
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lora_lite.fast_oft import BlockRotation, NeumannRotation, neumann_rotation, cayley_parts, _skew_index


def peft_like(x, q, b, terms, exact):
    "PEFT 0.21's OFT rotation, restated: dense skew by scatter, Neumann polynomial or `solve`, einsum, in `q`'s dtype."
    n = q.shape[0]
    r, c = torch.triu_indices(b, b, 1, device=q.device)
    Q = torch.zeros(n, b, b, device=q.device, dtype=q.dtype)
    Q[:, r, c] = q
    Q = Q - Q.transpose(-2, -1)
    I = torch.eye(b, device=q.device, dtype=q.dtype)
    if exact: R = torch.linalg.solve(I + Q, I - Q, left=False)
    else:
        R = I.repeat(n, 1, 1) + 2 * Q; P = Q @ Q; R = R + 2 * P
        for _ in range(3, terms - 1): P = P @ Q; R = R + 2 * P
        R = R + P @ Q
    xr = torch.einsum('...rk,rkc->...rc', x.to(q.dtype).reshape(*x.shape[:-1], n, b), R)
    return xr.reshape(x.shape).to(x.dtype)


def cases(b):
    ix = lambda q: _skew_index(b, q.device, q.dtype)
    return {
        'lora-lite exact (BlockRotation)': lambda x, q: BlockRotation.apply(x, q, b, ix(q)),
        'lora-lite Neumann k=3 (NeumannRotation)': lambda x, q: NeumannRotation.apply(x, q, b, 3, ix(q)),
        'PEFT-style exact, fp32 adapter': lambda x, q: peft_like(x, q, b, 5, True),
        'PEFT-style Neumann 5, fp32 adapter': lambda x, q: peft_like(x, q, b, 5, False),
        'PEFT-style Neumann 5, bf16 adapter': lambda x, q: peft_like(x, q.to(x.dtype), b, 5, False),
        'q -> R only: exact (inv_ex)': lambda x, q: cayley_parts(q, b, ix(q))[1],
        'q -> R only: Neumann k=3': lambda x, q: neumann_rotation(q, b, 3, ix(q)),
    }


def time_case(fn, x, q, iters, device):
    def step():
        y = fn(x, q)
        y.backward(torch.ones_like(y) if y.shape != x.shape else g)
    g = torch.randn_like(x)
    for _ in range(3): step()
    if device.type == 'cuda': torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters): step()
    host = (time.perf_counter() - t0) / iters * 1e3
    if device.type == 'cuda': torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        if device.type == 'cuda':
            a, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(); step(); e.record(); e.synchronize(); times.append(a.elapsed_time(e))
        else:
            t = time.perf_counter(); step(); times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), host


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--tokens', type=int, default=8192)
    p.add_argument('--widths', default='4096,12288')
    p.add_argument('--block', type=int, default=32)
    p.add_argument('--iters', type=int, default=50)
    a = p.parse_args(argv)
    dev, b = torch.device(a.device), a.block
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}; {a.tokens} tokens, blocks of {b}, "
          f"forward+backward, median of {a.iters}\n")
    print('| case | width | device ms | host ms (launches) |\n|---|---|---|---|')
    for d in map(int, a.widths.split(',')):
        torch.manual_seed(0)
        x = torch.randn(a.tokens, d, device=dev, dtype=torch.bfloat16, requires_grad=True)
        q = (torch.randn(d // b, b * (b - 1) // 2, device=dev) * 0.01).requires_grad_()
        for name, fn in cases(b).items():
            try: ms, host = time_case(fn, x, q, a.iters, dev); print(f'| {name} | {d} | {ms:.3f} | {host:.3f} |', flush=True)
            except Exception as e: print(f'| {name} | {d} | error: {type(e).__name__}: {str(e)[:80]} | |', flush=True)


if __name__ == '__main__':
    main()
