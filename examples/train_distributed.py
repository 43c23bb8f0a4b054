"""Train a lora-lite adapter with DDP and FSDP2 and check both against one-process training.

    torchrun --nproc_per_node 2 examples/train_distributed.py --out results/

One launch runs, in turn: `single` (rank 0 alone, the whole global batch, no wrapper), `ddp`
(DistributedDataParallel) and `fsdp2` (`fully_shard` on every decoder block and the root), each rank
on its slice of the same global batches. Every run builds the same seeded model, attaches the adapter
*before* wrapping or sharding (the order lora-lite requires), trains `--steps` AdamW steps, and saves
the adapter with `save_distributed` (rank 0 writes an ordinary `ll.save` file). Rank 0 then checks:

- the adapter of each engine equals the one-process adapter: relative error of the update,
  ||theta_engine - theta_single|| / ||theta_single - theta_0|| over all lora_* tensors, <= --tol;
- the saved file, loaded with `ll.load` into a fresh single-device model, reproduces the logits of
  the wrapped (sharded) model on an evaluation batch;

and writes `distributed.json` and `distributed.md` into `--out`, plus the adapter files and logits.
Backend: `nccl` when CUDA is present (one GPU per rank), `gloo` on CPU. Exit status 1 when a check fails.
"""
import argparse, json, os, platform, sys, time
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.distributed.fsdp import fully_shard
from torch.distributed.device_mesh import init_device_mesh
from safetensors.torch import save_file, load_file
import lora_lite as ll
from lora_lite.adapter import read_adapter
from lora_lite.distributed import check_not_sharded, check_wrapped, save_distributed
from lora_lite.testing import tiny_qwen3, task_loss, outputs

SIZES = {  # config-built Qwen3, random weights
    'tiny': dict(),  # hidden 64, 2 layers, vocab 256: CPU CI
    'small': dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                  num_attention_heads=16, num_key_value_heads=8, head_dim=64, max_position_embeddings=2048),
}
TOL = {'float32': 1e-4, 'bfloat16': 5e-2}     # relative error of the adapter update vs one process
LOGIT_TOL = {'float32': 1e-5, 'bfloat16': 1e-2}  # reload vs wrapped model, relative to max |logit|


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', required=True, help='folder for distributed.json/.md, adapters and logits')
    p.add_argument('--engines', default='single,ddp,fsdp2', help='comma list of single, ddp, fsdp2')
    p.add_argument('--size', default='tiny', choices=sorted(SIZES))
    p.add_argument('--dtype', default='float32', choices=sorted(TOL), help='base model dtype (adapters stay float32)')
    p.add_argument('--variant', default='lora')
    p.add_argument('--options', default='{}', help='variant options as JSON')
    p.add_argument('--r', type=int, default=8)
    p.add_argument('--alpha', type=float, default=16.0)
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--batch', type=int, default=8, help='global batch (sequences per step), split evenly over ranks')
    p.add_argument('--seq', type=int, default=32)
    p.add_argument('--lr', type=float, default=1e-2)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--tol', type=float, default=None, help='max relative update error (default by dtype)')
    a = p.parse_args(argv)
    a.engines = [e.strip() for e in a.engines.split(',') if e.strip()]
    bad = set(a.engines) - {'single', 'ddp', 'fsdp2'}
    if bad: p.error(f"unknown engines {sorted(bad)}; choose from single, ddp, fsdp2")
    a.tol = TOL[a.dtype] if a.tol is None else a.tol
    return a


def setup():
    "Join the torchrun group (or make a one-process one); nccl + one GPU per rank when CUDA is present."
    cuda = torch.cuda.is_available()
    local = int(os.environ.get('LOCAL_RANK', 0))
    device = torch.device('cuda', local) if cuda else torch.device('cpu')
    if cuda: torch.cuda.set_device(device)
    kw = dict(device_id=device) if cuda else {}
    if 'RANK' in os.environ: dist.init_process_group('nccl' if cuda else 'gloo', **kw)
    else: dist.init_process_group('nccl' if cuda else 'gloo', store=dist.HashStore(), rank=0, world_size=1, **kw)
    return dist.get_rank(), dist.get_world_size(), device


def build(a):
    "The seeded base model with the adapter attached, on CPU, identical on every rank."
    m = tiny_qwen3(seed=a.seed, dtype=getattr(torch, a.dtype), **SIZES[a.size])
    check_not_sharded(m)
    ll.attach(m, ll.LoraLiteConfig(variant=a.variant, r=a.r, alpha=a.alpha, options=json.loads(a.options)))
    return m


def wrap(m, engine, device, world):
    "Move/wrap/shard an attached model for `engine`; FSDP2 shards each decoder block, then the root."
    if engine == 'single': return m.to(device)
    if engine == 'ddp': w = DDP(m.to(device), device_ids=[device.index] if device.type == 'cuda' else None)
    else:
        mesh = init_device_mesh(device.type, (world,))
        for mod in m.modules():
            if type(mod).__name__ in m._no_split_modules: fully_shard(mod, mesh=mesh)
        w = fully_shard(m, mesh=mesh)
    return check_wrapped(w)


def batch(a, step, vocab):
    "Global batch of step `step`: sequences x_i = (s + i*d) mod vocab, random start s and stride d in 1..3."
    g = torch.Generator().manual_seed(a.seed * 100_003 + step)
    s, d = torch.randint(0, vocab, (a.batch, 1), generator=g), torch.randint(1, 4, (a.batch, 1), generator=g)
    return (s + d * torch.arange(a.seq)) % vocab


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)


def run(a, engine, rank, world, device):
    "Train one engine; every rank returns the wrapped model's logits on the eval batch and its stats."
    m = build(a)
    init = {k: v.clone() for k, v in ll.adapter_state_dict(m).items()}
    w = wrap(m, engine, device, world)
    vocab, n = m.config.vocab_size, (1 if engine == 'single' else world)
    if a.batch % n: raise SystemExit(f"--batch {a.batch} must be divisible by the world size {n}")
    opt = torch.optim.AdamW(ll.trainable_parameters(m), lr=a.lr, weight_decay=0.0)
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats(device)
    w.train(); losses, times = [], []
    for step in range(a.steps):
        ids = batch(a, step, vocab).chunk(n)[rank if n > 1 else 0].to(device)
        sync(device); t = time.perf_counter()
        loss = task_loss(w, ids)
        opt.zero_grad(); loss.backward(); opt.step()
        sync(device); times.append(time.perf_counter() - t)
        l = loss.detach().float()
        if n > 1: dist.all_reduce(l, op=dist.ReduceOp.AVG)
        losses.append(l.item())
    w.eval()
    eval_ids = batch(a, 10_000, vocab)[:4].to(device)
    with torch.no_grad(): logits = outputs(w, eval_ids).float().cpu()
    path = os.path.join(a.out, f'adapter-{engine}.safetensors')
    if engine == 'single': ll.save(m, path)
    else: save_distributed(w, path)
    if rank == 0:
        save_file({'logits': logits, 'ids': eval_ids.cpu()}, os.path.join(a.out, f'logits-{engine}.safetensors'))
        if engine == 'single': save_file({k: v.cpu() for k, v in init.items()}, os.path.join(a.out, 'init-single.safetensors'))
    mem = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == 'cuda' else None
    step_ms = 1000 * sorted(times[1:] or times)[len(times[1:] or times) // 2]
    return dict(engine=engine, world=n, losses=losses, step_ms=step_ms, peak_mib=mem)


def flat(sd): return torch.cat([sd[k].float().flatten() for k in sorted(sd)])


def compare(a, results, device):
    "Rank 0: adapters vs one process, and reload-from-file logits vs the wrapped model's."
    out = a.out
    have_ref = os.path.exists(os.path.join(out, 'adapter-single.safetensors'))
    if have_ref:
        ref = flat(read_adapter(os.path.join(out, 'adapter-single.safetensors'))[2])
        init = flat(load_file(os.path.join(out, 'init-single.safetensors')))
        upd = (ref - init).norm().item()
    for r in results:
        sd = flat(read_adapter(os.path.join(out, f"adapter-{r['engine']}.safetensors"))[2])
        if have_ref:
            r['update_norm'] = (sd - init).norm().item()
            r['update_rel_err'] = (sd - ref).norm().item() / upd
            r['max_abs_diff'] = (sd - ref).abs().max().item()
        lg = load_file(os.path.join(out, f"logits-{r['engine']}.safetensors"))
        fresh = tiny_qwen3(seed=a.seed, dtype=getattr(torch, a.dtype), **SIZES[a.size])
        ll.load(fresh, os.path.join(out, f"adapter-{r['engine']}.safetensors"))
        fresh.to(device).eval()
        with torch.no_grad(): y = outputs(fresh, lg['ids'].to(device)).float().cpu()
        r['reload_logit_diff'] = (y - lg['logits']).abs().max().item() / lg['logits'].abs().max().item()
        r['ok'] = (r.get('update_rel_err', 0.0) <= a.tol) and r['reload_logit_diff'] <= LOGIT_TOL[a.dtype]
    return results


def report(a, results, world, device):
    dev = torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu'
    info = dict(command='torchrun --nproc_per_node %d %s' % (world, ' '.join(sys.argv)), torch=torch.__version__,
                backend=dist.get_backend(), world_size=world, device=dev, size=a.size, dtype=a.dtype,
                variant=a.variant, r=a.r, steps=a.steps, global_batch=a.batch, seq=a.seq, lr=a.lr,
                tol_update_rel=a.tol, tol_reload_logits_rel=LOGIT_TOL[a.dtype], results=results)
    with open(os.path.join(a.out, 'distributed.json'), 'w') as f: json.dump(info, f, indent=1)
    lines = [f"# lora-lite under DDP and FSDP2", '',
             f"`{info['command']}`", '',
             f"torch {info['torch']}, backend {info['backend']}, {world} ranks, device {dev}; Qwen3 `{a.size}` "
             f"({a.dtype} base, float32 adapters), variant `{a.variant}` r={a.r}, {a.steps} AdamW steps, "
             f"global batch {a.batch}x{a.seq}, lr {a.lr}.", '',
             f"Update error = ||θ_engine − θ_1proc|| / ||θ_1proc − θ_0|| over all lora_* tensors (tolerance {a.tol:g}); "
             f"reload = max |logits(ll.load(file) on one device) − logits(wrapped model)| / max |logits| "
             f"(tolerance {LOGIT_TOL[a.dtype]:g}).", '',
             '| engine | ranks | loss first → last | update error | max abs diff | reload logit diff | step ms | peak MiB | ok |',
             '|---|---|---|---|---|---|---|---|---|']
    fmt = lambda v, f: '–' if v is None else format(v, f)
    for r in results:
        lines.append(f"| {r['engine']} | {r['world']} | {r['losses'][0]:.4f} → {r['losses'][-1]:.4f} | "
                     f"{fmt(r.get('update_rel_err'), '.2e')} | {fmt(r.get('max_abs_diff'), '.2e')} | {r['reload_logit_diff']:.2e} | "
                     f"{r['step_ms']:.1f} | {fmt(r['peak_mib'], '.0f')} | {'yes' if r['ok'] else 'NO'} |")
    with open(os.path.join(a.out, 'distributed.md'), 'w') as f: f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


def main(argv=None):
    a = parse(argv)
    rank, world, device = setup()
    os.makedirs(a.out, exist_ok=True)
    results = []
    for engine in a.engines:
        if engine == 'single':
            if rank == 0: results.append(run(a, engine, rank, world, device))
            dist.barrier()
        else: results.append(run(a, engine, rank, world, device))
    ok = True
    if rank == 0:
        results = compare(a, [r for r in results if r], device)
        report(a, results, world, device)
        ok = all(r['ok'] for r in results)
    flag = torch.tensor([float(ok)], device=device if device.type == 'cuda' else 'cpu')
    dist.broadcast(flag, 0)
    dist.barrier()
    dist.destroy_process_group()
    if not flag.item(): raise SystemExit('a check failed: see distributed.md')


if __name__ == '__main__': main()
