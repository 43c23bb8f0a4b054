#!/usr/bin/env python
"""IA3's activation passes on a GPU, kernel by kernel: device time (CUDA-graph replay, no host time) and
achieved bandwidth of each candidate for the forward `t ⊙ l` and the backward `(g ⊙ l, Σ g ⊙ t)`.

At the Qwen3-8B shape IA3 on all 7 projections is nothing but these passes (plus small launches per
target), so the launch configuration of the backward kernel and the number of small kernels per target
were chosen here, by measurement (`kernels.IA3_TILE`, `SCALE_BLOCK`, `SCALE_WARPS`).

    python bench/ia3_kernels.py [--tokens 8192] [--d 1024,4096,12288] [--reps 20]
    TRITON_INTERPRET=1 python bench/ia3_kernels.py --check      # CPU: candidates equal the formulas

Prints a markdown table: µs per call, GB/s (bytes the pass must move / time), × the first row of its
group (PyTorch's forward; the backward's tiling before this bench chose `IA3_TILE`)."""
import argparse, os, sys, torch
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import triton
import triton.language as tl
from lora_lite import triton_kernels as tk
from lora_lite.kernels import token_chunks, IA3_TILE, SCALE_BLOCK, SCALE_WARPS


def bwd_config(bd, bn, warps, programs, cast=False):
    "`lora_lite`'s backward kernel launched with this tiling: `fn(g, t, l32) -> (grad_t, grad_l)`; `cast`: round `l` in a separate launch first (the old path)."
    def fn(g, t, l32):
        n, d = g.shape
        lc = l32.to(g.dtype) if cast else l32
        chunk, k = token_chunks(n, d, programs, bd, bn)
        grad_t, partial = torch.empty_like(g), torch.empty(k, d, device=g.device, dtype=torch.float32)
        tk._scale_grads_kernel[(-(-d // bd), k)](g, t, lc, grad_t, partial, n, d, chunk, BN=bn, BD=bd, num_warps=warps)
        return grad_t, partial.sum(0)
    return fn


def fwd_torch(t, l32): return t * l32.to(t.dtype)


def fwd_triton(block, warps):
    def fn(t, l32):
        out = torch.empty_like(t)
        tk._scale_kernel[(triton.cdiv(t.numel(), block),)](t, l32, out, t.shape[-1], t.numel(), BLOCK=block, num_warps=warps)
        return out
    return fn


def device_us(fn, args, reps):
    "Device time per call: `reps` calls captured in one CUDA graph (no host time), best of 5 replays."
    for _ in range(3): fn(*args)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps): fn(*args)
    best = float('inf')
    for _ in range(5):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); g.replay(); b.record(); torch.cuda.synchronize()
        best = min(best, a.elapsed_time(b) * 1e3 / reps)
    return best


T = IA3_TILE
BWD = {'old (BD128 BN32 w4 1024p, l cast in its own launch)': (128, 32, 4, 1024, True),
       f"lora-lite IA3_TILE (BD{T['BD']} BN{T['BN']} w{T['num_warps']} {T['programs']}p)": (T['BD'], T['BN'], T['num_warps'], T['programs'], False)}
for bd in (64, 128, 256):
    for bn in (16, 32, 64):
        for w in (4, 8):
            for p in (1024, 2048, 4096):
                if (bd, bn, w, p, False) not in BWD.values(): BWD[f'BD{bd} BN{bn} w{w} {p}p'] = (bd, bn, w, p, False)
FWD = {'torch t*l.to(dt) (2 launches)': fwd_torch,
       f'lora-lite kernels.scale (BLOCK{SCALE_BLOCK} w{SCALE_WARPS})': fwd_triton(SCALE_BLOCK, SCALE_WARPS)}
for blk in (1024, 2048, 4096, 8192):
    for w in (4, 8):
        if (blk, w) != (SCALE_BLOCK, SCALE_WARPS): FWD[f'triton flat BLOCK{blk} w{w}'] = fwd_triton(blk, w)


def check():
    torch.manual_seed(0)
    dev = 'cpu'
    for n, d in ((100, 300), (37, 129)):
        for dt in (torch.bfloat16, torch.float32):
            t, g, l = torch.randn(n, d, dtype=dt), torch.randn(n, d, dtype=dt), torch.randn(d)
            ref = fwd_torch(t, l)
            for name, fn in list(FWD.items())[:3]:
                out = fn(t, l)
                assert ((out.float() - ref.float()).abs() <= 2 * ref.float().abs() * torch.finfo(dt).eps).all(), (name, dt)
            rgt, rgl = g * l.to(dt), (g.double() * t.double()).sum(0)
            for name, cfg in list(BWD.items())[:4]:
                gt, gl = bwd_config(*cfg)(g, t, l)
                assert ((gt.float() - rgt.float()).abs() <= 2 * rgt.float().abs() * torch.finfo(dt).eps).all(), (name, dt)
                assert torch.allclose(gl.double(), rgl, rtol=1e-4, atol=1e-3), (name, dt)
    print('candidates equal the eager formulas (Triton interpreter on the CPU)')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--tokens', type=int, default=8192)
    p.add_argument('--d', default='1024,4096,12288')
    p.add_argument('--reps', type=int, default=20)
    p.add_argument('--check', action='store_true')
    a = p.parse_args()
    if a.check: return check()
    dev, dt = 'cuda', torch.bfloat16
    print(f"# IA3 passes, {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}, tokens {a.tokens}, bf16\n")
    x = torch.empty(2**28, device=dev, dtype=torch.uint8)
    copy = 2 * x.numel() / device_us(lambda x: x.clone(), (x,), 10) / 1e3
    print(f"copy bandwidth (1 read + 1 write of 256 MiB): {copy:.0f} GB/s\n")
    del x
    print("| pass | d | candidate | µs | GB/s | × first |\n|---|---|---|---|---|---|")
    best = {}
    for d in map(int, a.d.split(',')):
        torch.manual_seed(0)
        t, g, l = torch.randn(a.tokens, d, device=dev, dtype=dt), torch.randn(a.tokens, d, device=dev, dtype=dt), torch.rand(d, device=dev) + .5
        nbytes = t.numel() * t.element_size()
        for kind, cands, args, passes in (('fwd', FWD, (t, l), 2), ('bwd', BWD, (g, t, l), 3)):
            res = {}
            for name, c in cands.items():
                fn = c if kind == 'fwd' else bwd_config(*c)
                try: res[name] = device_us(fn, args, a.reps)
                except Exception as e: print(f"| {kind} | {d} | {name} | failed: {type(e).__name__} | | |"); continue
            base = next(iter(res.values()))
            shown = sorted(res.items(), key=lambda kv: kv[1])[:6]
            for name in list(res)[:2]:
                if name not in dict(shown): shown.append((name, res[name]))
            for name, us in shown:
                print(f"| {kind} | {d} | {name} | {us:.1f} | {passes * nbytes / us / 1e3:.0f} | {us / base:.2f} |")
            best[(kind, d)] = shown[0]
    print("\nbest per (pass, d):", {f'{k[0]} {k[1]}': v[0] for k, v in best.items()})


if __name__ == '__main__':
    main()
