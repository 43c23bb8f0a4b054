"""Host time one adapted linear layer adds to a training step (forward + backward), per implementation.

At the Qwen3-0.6B shape a training step is host-bound (`paired_step.py`: the frozen base spends about
85% of its step in Python and dispatch, every adapter row over 95%), so each adapted layer costs
its host time, not its arithmetic. This measures that host time directly: a stack of `--layers`
small linear layers (tiny tensors, so the device never limits), forward + backward in a loop without
synchronizing, interleaved across arms in random order; each arm's time minus the bare stack's,
per layer, in microseconds. `lean-*` arms are plain forward hooks that do the same arithmetic
with the fewest operations, bench-only levers: they show how much of an arm is the hook machinery.

    python bench/hook_overhead.py --device cpu          # this machine (CPU dispatch only)
    python bench/hook_overhead.py                        # on a GPU: CUDA launches included
"""
from __future__ import annotations
import argparse, copy, random, statistics, sys, os, time
import torch
import torch.nn.functional as F
from torch import nn


def stack(layers, d, dtype, device):
    torch.manual_seed(0)
    m = nn.Sequential(*[nn.Linear(d, d, bias=False) for _ in range(layers)]).to(device=device, dtype=dtype)
    return m.requires_grad_(False)


def lean_hooks(model, r, kind):
    "Plain forward hooks computing LoRA (bf16 parameters, scale 2) with the fewest ops; returns the parameters."
    params = []
    for lin in model:
        A = nn.Parameter(torch.randn(r, lin.in_features, dtype=lin.weight.dtype, device=lin.weight.device) * 0.01)
        B = nn.Parameter(torch.randn(lin.out_features, r, dtype=lin.weight.dtype, device=lin.weight.device) * 0.01)
        lin.A, lin.B = A, B
        params += [A, B]
        if kind == 'lean':
            def hook(mod, args, y): return y + F.linear(F.linear(args[0], mod.A) * 2.0, mod.B)
        elif kind == 'lean-addmm':
            def hook(mod, args, y):
                x = args[0]
                h = torch.mm(x.view(-1, x.shape[-1]), mod.A.t()).mul_(2.0)
                return torch.addmm(y.view(-1, y.shape[-1]), h, mod.B.t()).view(y.shape)
        lin.register_forward_hook(hook)
    return params


def arm(base, name, r, device):
    m = copy.deepcopy(base)
    if name == 'none': return m, []
    if name.startswith('lean'): return m, lean_hooks(m, r, name)
    if name.startswith('peft'):
        import peft
        cfg = peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules=[str(i) for i in range(len(m))])
        pm = peft.get_peft_model(m, cfg, autocast_adapter_dtype=name != 'peft-bf16')
        return pm, [p for p in pm.parameters() if p.requires_grad]
    import lora_lite as ll
    kw = dict(variant='lora', r=r, alpha=2 * r, target_names=(r'^\d+$',))
    if name == 'll-bf16': kw.update(dtype=str(base[0].weight.dtype).removeprefix('torch.'), compute='input')
    elif name == 'll-ref': kw['impl'] = 'reference'
    elif name == 'll-fast': kw['impl'] = 'fast'
    elif name != 'll': raise ValueError(name)
    if device.type == 'cpu' and name != 'll-bf16': kw['compute'] = 'input'  # the CUDA default: parameters cast to x's dtype per call
    ll.attach(m, ll.LoraLiteConfig(**kw))
    return m, ll.trainable_parameters(m)


def visit(model, x, iters, device):
    if device.type == 'cuda': torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        model(x).sum().backward()
    host = time.perf_counter() - t0
    if device.type == 'cuda': torch.cuda.synchronize()
    return host / iters * 1e6


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--dtype', default='bfloat16')
    p.add_argument('--layers', type=int, default=16)
    p.add_argument('--d', type=int, default=64)
    p.add_argument('--tokens', type=int, default=16)
    p.add_argument('--r', type=int, default=16)
    p.add_argument('--iters', type=int, default=50)
    p.add_argument('--rounds', type=int, default=15)
    p.add_argument('--arms', default='none,lean,lean-addmm,ll,ll-bf16,ll-ref,ll-fast,peft-bf16,peft')
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    base = stack(args.layers, args.d, dtype, device)
    x = torch.randn(args.tokens, args.d, dtype=dtype, device=device, requires_grad=True)
    arms = {n: arm(base, n, args.r, device) for n in args.arms.split(',')}
    times = {n: [] for n in arms}
    for n, (m, _) in arms.items(): visit(m, x, 3, device)
    rng = random.Random(0)
    for _ in range(args.rounds):
        order = list(arms); rng.shuffle(order)
        for n in order: times[n].append(visit(arms[n][0], x, args.iters, device))
    none = statistics.median(times['none']) if 'none' in times else 0.0
    print(f"{args.layers} layers {args.d}->{args.d}, {args.tokens} tokens, {args.dtype} on {device}; "
          f"forward+backward, host µs, median of {args.rounds} interleaved rounds x {args.iters} iterations\n")
    print('| arm | µs per step | added per layer µs | vs peft-bf16 |\n|---|---|---|---|')
    ref = statistics.median(times['peft-bf16']) if 'peft-bf16' in times else None
    for n, t in times.items():
        med = statistics.median(t)
        rel = f"{(med - none) / (ref - none):.2f}" if ref and n != 'none' else ''
        print(f"| {n} | {med:.0f} | {(med - none) / args.layers:.1f} | {rel} |")


if __name__ == '__main__':
    main()
