"""Training-step time of many adapters, interleaved step by step so that drift cancels.

`train_step.py` times one row after another: on a shared GPU the same row can differ by 1.2x-1.6x
between repeats, which is larger than the differences it should show at small shapes. Here every
arm (a variant x implementation, and the frozen floor) gets its own deep copy of the model, built
once, and the timing visits the arms in a fresh random order each round, a few steps per visit. An
arm's ratio in round k divides its step time by the floor's step time in the same round, so slow
and fast periods of the machine hit both sides of every ratio. The table shows the median paired
ratio and its interquartile range over rounds.

Each visit also records the host time of a step: from the call until `train_step` returns (the
Python and dispatch work, before waiting for the device). A host time close to the step time
means the step is host-bound: the GPU waits for the launches.

    python bench/paired_step.py --device cpu --shape host --batch 1 --seq 16 --rounds 5   # checks it runs
    python bench/paired_step.py --shape 0.6b --variants lora,dora --impls ll,ll-bf16,peft-bf16
"""
from __future__ import annotations
import argparse, copy, gc, json, os, random, statistics, sys, time
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step as ts  # noqa: E402  (model shapes, variant table, attach helpers)


def arm_setup(model, spec, impl):
    "Attach one implementation to `model`; returns (trainable params, runner)."
    llkw, pf = spec
    if impl.startswith('peft'):
        params, _, runner = ts.attach_peft(model, pf, impl == 'peft-bf16')
        return params, runner
    kw, compute = dict(llkw), None
    if impl.startswith('ll-bf16'): kw['dtype'], compute = 'bfloat16', 'input'
    if impl == 'll-bf16-fast': kw['impl'] = 'fast'   # PEFT bf16's storage, the fast path on every call (whatever the size)
    elif impl == 'll-fast': kw['impl'] = 'fast'
    elif impl == 'll-ref': kw['impl'] = 'reference'
    elif impl not in ('ll', 'll-bf16'): raise ValueError(f"unknown impl {impl!r}: use ll, ll-bf16, ll-bf16-fast, ll-fast, ll-ref, peft or peft-bf16")
    params, _, runner = ts.attach_ll(model, kw, compute)
    return params, runner


def visit(arm, ids, steps, device):
    "`steps` training steps of one arm: device ms (CUDA events / wall on CPU) and host ms of each, and its peak above what was resident."
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    out = []
    for _ in range(steps):
        ts.sync(device)
        tm = ts.Timer(device); tm.start(); h0 = time.perf_counter()
        ts.train_step(arm['runner'], ids, arm['opt'])
        host = (time.perf_counter() - h0) * 1e3
        out.append((tm.stop(), host))
    if device.type == 'cuda': arm['peak_above'] = max(arm.get('peak_above', 0), (torch.cuda.max_memory_allocated() - base) / 2**30)
    return out


def summarize(arms, rounds_of):
    floor = arms['floor']
    rows = []
    for name, arm in arms.items():
        ratios = [statistics.median(t for t, _ in arm['rounds'][k]) / statistics.median(t for t, _ in floor['rounds'][k])
                  for k in range(rounds_of)]
        ms = [t for k in range(rounds_of) for t, _ in arm['rounds'][k]]
        host = [h for k in range(rounds_of) for _, h in arm['rounds'][k]]
        q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
        rows.append(dict(arm=name, variant=arm['variant'], impl=arm['impl'], ratio=statistics.median(ratios), q1=q[0], q3=q[2],
                         ms=statistics.median(ms), host_ms=statistics.median(host), peak_above_gib=arm.get('peak_above'),
                         trainable=arm['trainable'], ratios=ratios))
    return rows


def table(rows, impls):
    by = {(r['variant'], r['impl']): r for r in rows}
    fl = by[('floor', 'frozen base')]
    out = [f"floor: {fl['ms']:.1f} ms/step, host {fl['host_ms']:.1f} ms" + (f", step peak {fl['peak_above_gib']:.1f} GiB above resident" if fl['peak_above_gib'] else ''),
           '', '| variant | ' + ' | '.join(impls) + ' |', '|---|' + '---|' * len(impls)]
    for v in dict.fromkeys(r['variant'] for r in rows if r['variant'] != 'floor'):
        cells = []
        for i in impls:
            r = by.get((v, i))
            if r is None: cells.append('—'); continue
            mem = f" · {r['peak_above_gib']:.1f} GiB" if r['peak_above_gib'] is not None else ''
            cells.append(f"{r['ratio']:.2f}× ({r['q1']:.2f}–{r['q3']:.2f}) host {r['host_ms'] / r['ms']:.0%}{mem}")
        out.append(f'| {v} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--shape', choices=list(ts.SHAPES), default='0.6b')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--dtype', default='bfloat16')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--seq', type=int, default=1024)
    p.add_argument('--r', type=int, default=16)
    p.add_argument('--layers', type=int, default=0)
    p.add_argument('--variants', default='lora,dora,ia3,vera,road,oft-neumann,hra')
    p.add_argument('--impls', default='ll,ll-bf16,peft-bf16', help='ll, ll-bf16, ll-bf16-fast, ll-fast, ll-ref, peft, peft-bf16')
    p.add_argument('--rounds', type=int, default=8, help='visits per arm (each in a fresh random order)')
    p.add_argument('--steps', type=int, default=2, help='timed steps per visit (after one untimed step)')
    p.add_argument('--budget-s', type=float, default=0, help='stop starting new rounds after this many seconds (0: no limit)')
    p.add_argument('--json', default='')
    args = p.parse_args(argv)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import lora_lite  # noqa: F401
    t_start = time.perf_counter()
    base = ts.build_model(args.shape, dtype, device, args.layers)
    ids = torch.randint(0, base.config.vocab_size, (args.batch, args.seq), generator=torch.Generator().manual_seed(0)).to(device)
    specs = {**ts.variant_specs(args.r), **ts.new_variant_specs(args.r, ts.SHAPES[args.shape])}
    impls = args.impls.split(',')
    arms = {'floor': dict(variant='floor', impl='frozen base', runner=base, opt=None, trainable=0, rounds=[])}
    for v in args.variants.split(','):
        for impl in impls:
            m = copy.deepcopy(base)
            try: params, runner = arm_setup(m, specs[v], impl)
            except Exception as e:
                print(f"  {v} {impl}: {type(e).__name__}: {str(e)[:200]}", flush=True); del m; continue
            opt = torch.optim.AdamW(params, lr=1e-5) if params else None
            arms[f'{v}/{impl}'] = dict(variant=v, impl=impl, runner=runner, opt=opt, trainable=sum(p.numel() for p in params), rounds=[])
    print(f"{len(arms)} arms on {args.shape} ({args.batch}x{args.seq}) built in {time.perf_counter() - t_start:.1f} s", flush=True)
    for arm in arms.values(): ts.train_step(arm['runner'], ids, arm['opt']); ts.train_step(arm['runner'], ids, arm['opt'])
    ts.sync(device)
    rng, done = random.Random(0), 0
    for k in range(args.rounds):
        if args.budget_s and k >= 2 and time.perf_counter() - t_start > args.budget_s: break
        order = list(arms); rng.shuffle(order)
        for name in order:
            arm = arms[name]
            ts.train_step(arm['runner'], ids, arm['opt'])  # untimed: the first step after a switch pays for the switch
            arm['rounds'].append(visit(arm, ids, args.steps, device))
        done += 1
        gc.collect()
        print(f"  round {k + 1}: " + ', '.join(f"{n} {statistics.median(t for t, _ in arms[n]['rounds'][-1]):.0f}" for n in arms), flush=True)
    rows = summarize(arms, done)
    md = table(rows, impls)
    print(f"\n{done} rounds x {args.steps} steps per arm; ratio = median over rounds of (arm / floor in the same round), "
          "(interquartile range); host = host time of a step / its step time\n\n" + md)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        meta = dict(command='python ' + ' '.join([os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:])),
                    versions=ts.versions(), shape=args.shape, batch=args.batch, seq=args.seq, r=args.r, rounds=done, steps=args.steps,
                    layers=args.layers or ts.SHAPES[args.shape]['num_hidden_layers'])
        with open(args.json, 'w') as f: json.dump(dict(meta=meta, rows=rows, table=md), f, indent=1)
        print(f"wrote {args.json}")
    return rows


if __name__ == '__main__':
    main()
