#!/usr/bin/env python
"""Forward+backward time of the activation-sized parts of IA3, RoAd and DoRA, formulation by formulation.

At the Qwen3-8B shape these variants are GPU-bound on full passes over each target's output (the
low-rank GEMMs are cheap); this measures candidate formulations of those passes side by side in one
run, on one layer-sized tensor, so a change to a variant notebook is chosen by measurement.

    python bench/elementwise.py [--tokens 8192] [--d 4096,12288] [--compile]

Prints a markdown table: median ms of forward+backward per formulation (CUDA events, 20 reps)
and the ratio to the first formulation of its group."""
import argparse, os, statistics, sys, torch
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ia3_eager(y, l): return y * l


class _Scale(torch.autograd.Function):
    "y * l with grad_l as one reduction (einsum) instead of a materialised g*y then sum."
    @staticmethod
    def forward(ctx, y, l):
        ctx.save_for_backward(y, l)
        return y * l

    @staticmethod
    def backward(ctx, g):
        y, l = ctx.saved_tensors
        g2, y2 = g.reshape(-1, g.shape[-1]), y.reshape(-1, y.shape[-1])
        return g * l, torch.einsum('nd,nd->d', g2, y2).to(l.dtype)


def ia3_fn(y, l): return _Scale.apply(y, l)


def ia3_ll(y, l):
    from lora_lite.fast_ia3 import ChannelScale  # what IA3 runs now: fused Triton backward on a GPU
    return ChannelScale.apply(y, l, y.dtype)


def road_ll(h, c, s):
    from lora_lite.fast_road import RoAdRotate  # what RoAd runs now: fused Triton forward and backward on a GPU
    return RoAdRotate.apply(h, c, s)


def road_chunk(h, c, s):
    h1, h2 = h.chunk(2, -1)
    c1, c2 = c.chunk(2); s1, s2 = s.chunk(2)
    return torch.cat((c1 * h1 - s1 * h2, c2 * h2 + s2 * h1), -1)


def road_addcmul(h, c, s):
    h1, h2 = h.chunk(2, -1)
    s1, s2 = s.chunk(2)
    return torch.addcmul(h * c, torch.cat((h2, h1), -1), torch.cat((-s1, s2)))


def road_roll(h, c, s):
    s1, s2 = s.chunk(2)
    return torch.addcmul(h * c, h.roll(h.shape[-1] // 2, -1), torch.cat((-s1, s2)))


def dora_old(y, h, B, g):
    return y + (g - 1) * y + g * (h @ B.T)


def dora_fused(y, h, B, g):
    return g * torch.addmm(y.reshape(-1, y.shape[-1]), h.reshape(-1, h.shape[-1]), B.T).reshape(y.shape)


def timeit(fn, inputs, reps=20, warm=3):
    evs = []
    for i in range(warm + reps):
        for t in inputs:
            if t.grad is not None: t.grad = None
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        out = fn(*inputs)
        out.backward(torch.ones_like(out))
        b.record()
        torch.cuda.synchronize()
        if i >= warm: evs.append(a.elapsed_time(b))
    return statistics.median(evs)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--tokens', type=int, default=8192)
    p.add_argument('--d', default='4096,12288')
    p.add_argument('--compile', action='store_true', help='also time torch.compile of the eager formulation')
    a = p.parse_args()
    dev, dt = 'cuda', torch.bfloat16
    print(f"# activation-sized passes, {torch.cuda.get_device_name()}, torch {torch.__version__}, tokens {a.tokens}\n")
    print('| group | d | formulation | ms fwd+bwd | × first |\n|---|---|---|---|---|')
    for d in map(int, a.d.split(',')):
        y = torch.randn(a.tokens, d, device=dev, dtype=dt, requires_grad=True)
        groups = {
            'ia3': ([y, torch.ones(d, device=dev, dtype=dt, requires_grad=True)],
                    {'eager y*l': ia3_eager, 'autograd.Function, einsum grad_l': ia3_fn, 'lora-lite ChannelScale (Triton backward)': ia3_ll}),
            'road': ([y, torch.rand(d, device=dev, dtype=dt, requires_grad=True), torch.rand(d, device=dev, dtype=dt, requires_grad=True)],
                     {'chunk + cat (old)': road_chunk, 'addcmul + cat': road_addcmul, 'addcmul + roll': road_roll, 'lora-lite RoAdRotate (Triton)': road_ll}),
            'dora': ([y, torch.randn(a.tokens, 16, device=dev, dtype=dt, requires_grad=True), torch.randn(d, 16, device=dev, dtype=dt, requires_grad=True),
                      torch.rand(d, device=dev, dtype=dt, requires_grad=True)],
                     {'y + (g-1)y + g·BAx (old)': dora_old, 'g · addmm(y, h, Bᵀ)': dora_fused}),
        }
        for gname, (inputs, fns) in groups.items():
            if a.compile:
                first = next(iter(fns.values()))
                fns = {**fns, 'torch.compile(first)': torch.compile(first, dynamic=False)}
            base = None
            for fname, fn in fns.items():
                try: ms = timeit(fn, inputs)
                except Exception as e: print(f"| {gname} | {d} | {fname} | error: {type(e).__name__}: {str(e)[:80]} | |"); continue
                base = base or ms
                print(f"| {gname} | {d} | {fname} | {ms:.3f} | {ms / base:.2f} |", flush=True)


if __name__ == '__main__':
    main()
