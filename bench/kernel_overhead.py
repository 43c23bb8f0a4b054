#!/usr/bin/env python
"""Host cost of the fused-kernel paths (IA3's ChannelScale, RoAd's RoAdRotate) against eager, on a GPU.

Single-tensor timings of these paths are launch-bound at small widths; this separates host time
(back-to-back calls without a sync, wall clock per call) from device time (CUDA events), and prints a
profile of one forward+backward of each.

    python bench/kernel_overhead.py
"""
import os, sys, time, statistics, torch
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lora_lite.fast_ia3 import ChannelScale
from lora_lite.fast_road import RoAdRotate
from lora_lite.kernels import scale_grads, pair_rotate, pair_rotate_grads


def host_us(fn, n=300):
    for _ in range(20): fn()
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(n): fn()
    host = (time.perf_counter() - t) / n * 1e6
    torch.cuda.synchronize(); total = (time.perf_counter() - t) / n * 1e6
    return host, total


def main():
    dev, dt = 'cuda', torch.bfloat16
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}\n")
    print('| d | path | host us/call | wall us/call (incl. device) |\n|---|---|---|---|')
    for d in (1024, 12288):
        y = torch.randn(8192, d, device=dev, dtype=dt, requires_grad=True)
        g = torch.randn(8192, d, device=dev, dtype=dt)
        l = torch.ones(d, device=dev, requires_grad=True)
        c, s = torch.ones(d // 2, device=dev, requires_grad=True), torch.zeros(d // 2, device=dev, requires_grad=True)
        lb = l.detach().to(dt)
        paths = {
            'ia3 eager fwd+bwd': lambda: (y * l.to(dt)).backward(g),
            'ia3 ChannelScale fwd+bwd': lambda: ChannelScale.apply(y, l, dt).backward(g),
            'kernels.scale_grads alone': lambda: scale_grads(g, y, lb),
            'road RoAdRotate fwd+bwd': lambda: RoAdRotate.apply(y, c, s).backward(g),
            'kernels.pair_rotate alone': lambda: pair_rotate(y.detach(), lb, lb),
            'kernels.pair_rotate_grads alone': lambda: pair_rotate_grads(g, y.detach(), lb, lb),
            'torch.empty(8192, d) alone': lambda: torch.empty(8192, d, device=dev),
        }
        for name, fn in paths.items():
            h, w = host_us(fn)
            print(f'| {d} | {name} | {h:.1f} | {w:.1f} |', flush=True)
    from torch.profiler import profile, ProfilerActivity
    for name, fn in (('ChannelScale', lambda: ChannelScale.apply(y, l, dt).backward(g)), ('RoAdRotate', lambda: RoAdRotate.apply(y, c, s).backward(g))):
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(5): fn()
            torch.cuda.synchronize()
        print(f'\n## profile: {name}, d=12288, 5 calls\n')
        print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=14))


if __name__ == '__main__':
    main()
