"""FSDP2 at the Qwen3-8B shape: per-GPU memory, step time, adapter equality and save/reload; 4-bit bases too.

    torchrun --standalone --nproc_per_node 2 bench/fsdp_8b.py --out OUT                       # 2 GPUs, bf16 8B
    torchrun --standalone --nproc_per_node 2 bench/fsdp_8b.py --quant nf4 --out OUT           # 2 GPUs, NF4 base
    torchrun --standalone --nproc_per_node 2 bench/fsdp_8b.py --device cpu --shape tiny --out OUT   # CPU, gloo

The model is `bench/train_step.py`'s config-built Qwen3 (`SHAPES`, random weights, seed 0) with the
adapter on all 7 projections. For each base (`--quant`: none = the `--dtype` base, nf4 = every decoder
linear a bitsandbytes `Linear4bit` with `--quant-storage`) and each variant (`--variants`), in turn:

- `one` (rank 0 alone, one device): attach, then `--steps` AdamW steps on the global batch of each
  step, split into one micro-batch per rank with averaged gradients: the arithmetic FSDP2 does, on one
  device. Its step time and tokens/s are the one-device baseline, its peak memory the one-device peak.
- `fsdp2` (every rank): attach (same seed), `check_same_on_ranks`, `fully_shard` on every decoder
  block then the root, `check_wrapped`, the same steps with each rank on its slice; per-rank peak
  memory (after sharding: the full model each rank built to attach is not counted), step time, tokens/s.
- checks on rank 0: update error ||θ_fsdp2 − θ_one|| / ||θ_one − θ_0|| over all `lora_*` tensors
  (tolerance `--tol`: float32 1e-4, bf16 1e-2); the file `save_distributed` wrote, loaded with
  `ll.load` into a fresh unsharded model on one device, gives the sharded model's logits (relative to
  max |logit|, `--logit-tol`: float32 1e-5, bf16 1e-2).

A combination that lora-lite refuses (PiSSA on a 4-bit base: it rewrites the weight) is recorded as
refused. Writes `fsdp.json` and `fsdp.md` to `--out`; exit status 1 if a check fails. Step times are
the median after the first (warm-up) step; peak memory is `torch.cuda.max_memory_allocated` (none on CPU).
"""
from __future__ import annotations
import argparse, datetime, gc, json, os, platform, statistics, sys, time
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.distributed.device_mesh import init_device_mesh

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
from train_step import SHAPES, TARGETS, build_model, ll_config  # noqa: E402
import lora_lite as ll  # noqa: E402
from lora_lite.adapter import read_adapter  # noqa: E402
from lora_lite.distributed import check_same_on_ranks, check_wrapped, save_distributed, linear4bit  # noqa: E402

VARIANTS = {  # the rows of bench/train_step.py's table, lora-lite side
    'lora': lambda r: dict(variant='lora', r=r, alpha=2 * r),
    'dora': lambda r: dict(variant='dora', r=r, alpha=2 * r),
    'pissa': lambda r: dict(variant='pissa', r=r, alpha=r, options=dict(init='fast', niter=4)),
    'oft': lambda r: dict(variant='oft', options=dict(block_size=32)),
    'hra': lambda r: dict(variant='hra', r=r),
}
TOL = {'float32': 1e-4, 'bfloat16': 1e-2}
LOGIT_TOL = {'float32': 1e-5, 'bfloat16': 1e-2}


def parse(argv=None):
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', required=True)
    p.add_argument('--device', default='cuda' if cuda else 'cpu', choices=['cuda', 'cpu'])
    p.add_argument('--shape', default='8b', choices=list(SHAPES))
    p.add_argument('--dtype', default=None, help='base dtype (default: bfloat16 on cuda, float32 on cpu); adapters stay float32')
    p.add_argument('--variants', default='lora,dora,pissa,oft', help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument('--quant', default='none', help='comma list of bases: none (the --dtype base), nf4 (bitsandbytes Linear4bit)')
    p.add_argument('--quant-storage', default='uint8', help='Linear4bit quant_storage (uint8: FSDP2 never casts it)')
    p.add_argument('--impl', default='auto', choices=['auto', 'fast', 'reference'], help="LoraLiteConfig.impl (tests: fast)")
    p.add_argument('--adapter-rank', dest='r', type=int, default=16, help='r of the adapters (torchrun takes --r for itself)')
    p.add_argument('--steps', type=int, default=4, help='AdamW steps, the first one is warm-up for the timings')
    p.add_argument('--batch', type=int, default=8, help='global batch (sequences per step), split evenly over ranks')
    p.add_argument('--seq', type=int, default=1024)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--tol', type=float, default=None)
    p.add_argument('--logit-tol', type=float, default=None)
    a = p.parse_args(argv)
    a.dtype = a.dtype or ('bfloat16' if a.device == 'cuda' else 'float32')
    a.variants = [v for v in a.variants.split(',') if v]
    a.quant = [q for q in a.quant.split(',') if q]
    bad = set(a.variants) - set(VARIANTS) or set(a.quant) - {'none', 'nf4'}
    if bad: p.error(f"unknown variants or bases: {sorted(bad)}")
    a.tol = TOL[a.dtype] if a.tol is None else a.tol
    a.logit_tol = LOGIT_TOL[a.dtype] if a.logit_tol is None else a.logit_tol
    return a


def setup(a):
    "Join the torchrun group (or a one-process one): nccl and one GPU per rank on cuda, gloo on cpu."
    local = int(os.environ.get('LOCAL_RANK', 0))
    device = torch.device('cuda', local) if a.device == 'cuda' else torch.device('cpu')
    if device.type == 'cuda': torch.cuda.set_device(device)
    backend, kw = ('nccl', dict(device_id=device)) if device.type == 'cuda' else ('gloo', {})
    kw['timeout'] = datetime.timedelta(minutes=30)  # the other ranks wait while rank 0 runs the one-device baseline
    if 'RANK' in os.environ: dist.init_process_group(backend, **kw)
    else: dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, **kw)
    return dist.get_rank(), dist.get_world_size(), device


def quantize_(model, a, device):
    "Every linear of the decoder blocks as an NF4 `Linear4bit` (the lm_head stays dense, as in QLoRA)."
    cdt = getattr(torch, a.dtype)
    for block in model.model.layers:
        for name, lin in list(block.named_modules()):
            if type(lin) is nn.Linear:
                block.set_submodule(name, linear4bit(lin, getattr(torch, a.quant_storage), cdt, device=device))
    return model


def build(a, base, variant, device):
    "The seeded model on `device` (4-bit per `base`) with the adapter attached; the same on every rank."
    m = build_model(a.shape, getattr(torch, a.dtype), device)
    if base == 'nf4': quantize_(m, a, device)
    torch.manual_seed(a.seed)
    ll.attach(m, ll_config(dict(VARIANTS[variant](a.r), target_names=tuple(TARGETS), impl=a.impl), None))
    return m


def batch(a, step, vocab, device):
    g = torch.Generator().manual_seed(a.seed * 100_003 + step)
    return torch.randint(0, vocab, (a.batch, a.seq), generator=g).to(device)


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)


def peak_gib(device):
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == 'cuda' else None


def train(a, model, ids_of, micro, device):
    "AdamW steps; `ids_of(step)` is this process's part of the global batch, run as `micro` micro-batches."
    opt = torch.optim.AdamW(ll.trainable_parameters(model), lr=a.lr, weight_decay=0.0)
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats(device)
    model.train()
    times, losses = [], []
    for step in range(a.steps):
        ids = ids_of(step)
        sync(device)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for part in ids.chunk(micro):
            l = model(input_ids=part, labels=part).loss.float() / micro
            l.backward()
            total += l.detach()
        opt.step()
        sync(device)
        times.append(time.perf_counter() - t)
        losses.append(total)
    step_s = statistics.median(times[1:] or times)
    return dict(step_ms=1e3 * step_s, tokens_per_s=a.batch * a.seq / step_s, peak_gib=peak_gib(device),
                losses=[float(l) for l in losses])


def eval_logits(a, model, device):
    ids = batch(a, 10_000, model.config.vocab_size, device)[:1, :min(a.seq, 128)]
    model.eval()
    with torch.no_grad(): return ids.cpu(), model(input_ids=ids).logits.float().cpu()


def free(device):
    gc.collect()
    if device.type == 'cuda': torch.cuda.empty_cache()


def run_one(a, base, variant, device, world, tag):
    "Rank 0 alone: the one-device run (micro-batch accumulation); saves the init and trained adapters."
    m = build(a, base, variant, device)
    init = {k: v.detach().cpu().clone() for k, v in ll.adapter_state_dict(m).items()}
    res = train(a, m, lambda s: batch(a, s, m.config.vocab_size, device), world, device)
    ll.save(m, os.path.join(a.out, f'{tag}-one.safetensors'))
    torch.save(init, os.path.join(a.out, f'{tag}-init.pt'))
    del m
    free(device)
    return res


def run_fsdp(a, base, variant, device, rank, world, tag):
    "Every rank: attach, shard, train on its slice, save with `save_distributed`, keep the eval logits."
    m = build(a, base, variant, device)
    check_same_on_ranks(m)
    mesh = init_device_mesh(device.type, (world,))
    for block in m.model.layers: fully_shard(block, mesh=mesh)
    fully_shard(m, mesh=mesh)
    check_wrapped(m)
    free(device)
    res = train(a, m, lambda s: batch(a, s, m.config.vocab_size, device).chunk(world)[rank], 1, device)
    ids, logits = eval_logits(a, m, device)
    save_distributed(m, os.path.join(a.out, f'{tag}-fsdp2.safetensors'))
    if rank == 0: torch.save(dict(ids=ids, logits=logits), os.path.join(a.out, f'{tag}-logits.pt'))
    peaks = [None] * world
    dist.all_gather_object(peaks, res['peak_gib'])
    res['peak_gib_per_rank'] = peaks
    del m
    free(device)
    return res


def flat(sd): return torch.cat([sd[k].float().flatten() for k in sorted(sd)])


def check(a, base, variant, device, tag):
    "Rank 0: update error of the sharded adapter vs the one-device one; reload of the saved file on one device."
    one = read_adapter(os.path.join(a.out, f'{tag}-one.safetensors'))[2]
    fs = read_adapter(os.path.join(a.out, f'{tag}-fsdp2.safetensors'))[2]
    init = torch.load(os.path.join(a.out, f'{tag}-init.pt'))
    th, tr, t0 = flat(fs), flat(one), flat(init)
    out = dict(err_vs_one=((th - tr).norm() / (tr - t0).norm()).item(), maxdiff_vs_one=(th - tr).abs().max().item(),
               moved=(tr - t0).abs().max().item())
    lg = torch.load(os.path.join(a.out, f'{tag}-logits.pt'))
    m = build_model(a.shape, getattr(torch, a.dtype), device)
    if base == 'nf4': quantize_(m, a, device)
    ll.load(m, os.path.join(a.out, f'{tag}-fsdp2.safetensors'))
    m.eval()
    with torch.no_grad(): y = m(input_ids=lg['ids'].to(device)).logits.float().cpu()
    out['reload_logit_diff'] = ((y - lg['logits']).abs().max() / lg['logits'].abs().max()).item()
    del m
    free(device)
    out['ok'] = bool(out['err_vs_one'] <= a.tol and out['reload_logit_diff'] <= a.logit_tol and out['moved'] > 0)
    return out


def combo(a, base, variant, rank, world, device):
    tag = f'{base}-{variant}'
    row = dict(base=base if base != 'none' else a.dtype, variant=variant)
    refused = [None]
    if rank == 0:
        try: row['one'] = run_one(a, base, variant, device, world, tag)
        except TypeError as e:  # attach refuses the combination; tell every rank, so that all skip it
            if 'cannot attach' not in str(e): raise
            refused[0] = str(e).split(': ', 1)[-1][:200]
    dist.broadcast_object_list(refused, 0)
    if refused[0] is not None:
        row.update(status='refused', reason=refused[0])
        return row
    row['fsdp2'] = run_fsdp(a, base, variant, device, rank, world, tag)
    if rank == 0: row.update(check(a, base, variant, device, tag))
    dist.barrier()
    row['status'] = 'ran'
    return row


def versions():
    import transformers
    v = dict(torch=torch.__version__, transformers=transformers.__version__, python=platform.python_version())
    try:
        import bitsandbytes
        v['bitsandbytes'] = bitsandbytes.__version__
    except ImportError: pass
    return v


def report(a, rows, world, device):
    fmt = lambda v, f='.3g': '–' if v is None else format(v, f)
    dev = torch.cuda.get_device_name(device) if device.type == 'cuda' else (platform.processor() or 'cpu')
    info = dict(command=' '.join(['torchrun --nproc_per_node', str(world)] + sys.argv), versions=versions(),
                backend=dist.get_backend(), world_size=world, device=dev, shape=a.shape, model_config=SHAPES[a.shape],
                dtype=a.dtype, quant_storage=a.quant_storage, r=a.r, steps=a.steps, global_batch=a.batch, seq=a.seq,
                lr=a.lr, tol=a.tol, logit_tol=a.logit_tol, rows=rows)
    with open(os.path.join(a.out, 'fsdp.json'), 'w') as f: json.dump(info, f, indent=1)
    lines = [f"# lora-lite under FSDP2: Qwen3 `{a.shape}` shape, {world} ranks", '', f"`{info['command']}`", '',
             f"{', '.join(f'{k} {v}' for k, v in info['versions'].items())}; backend {info['backend']}, {dev}. "
             f"Adapters on all 7 projections (r={a.r}), float32; {a.steps} AdamW steps at lr {a.lr} on global batches "
             f"of {a.batch}x{a.seq} tokens; one = one device, one micro-batch per rank; fsdp2 = each rank its slice.", '',
             '| base | variant | one: step ms | one: tok/s | one: peak GiB | fsdp2: step ms | fsdp2: tok/s | '
             'fsdp2: peak GiB per rank | error vs one | reload | ok |', '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        if r['status'] == 'refused':
            lines.append(f"| {r['base']} | {r['variant']} | refused by `ll.attach`: {r['reason']} |||||||||")
            continue
        o, s = r['one'], r['fsdp2']
        peaks = ' / '.join(fmt(p, '.1f') for p in s['peak_gib_per_rank'])
        lines.append(f"| {r['base']} | {r['variant']} | {o['step_ms']:.1f} | {o['tokens_per_s']:.0f} | {fmt(o['peak_gib'], '.1f')} "
                     f"| {s['step_ms']:.1f} | {s['tokens_per_s']:.0f} | {peaks} | {r['err_vs_one']:.2e} "
                     f"| {r['reload_logit_diff']:.2e} | {'yes' if r['ok'] else 'NO'} |")
    lines += ['', f"error = ‖θ_fsdp2 − θ_one‖ / ‖θ_one − θ_0‖ over all lora_* tensors (tolerance {a.tol:g}); reload = the "
              f"saved file in a fresh unsharded model on one device vs the sharded model's logits, relative to max |logit| "
              f"(tolerance {a.logit_tol:g})."]
    with open(os.path.join(a.out, 'fsdp.md'), 'w') as f: f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines), flush=True)


def main(argv=None):
    a = parse(argv)
    rank, world, device = setup(a)
    if a.batch % world: raise SystemExit(f"--batch {a.batch} must be divisible by the world size {world}")
    os.makedirs(a.out, exist_ok=True)
    rows = [combo(a, base, v, rank, world, device) for base in a.quant for v in a.variants]
    ok = True
    if rank == 0:
        report(a, rows, world, device)
        ok = all(r.get('ok', True) for r in rows)
    flag = torch.tensor([float(ok)], device=device)
    dist.broadcast(flag, 0)
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if flag.item() else 1)  # skip interpreter teardown, where gloo threads sometimes abort after a clean run


if __name__ == '__main__': main()
