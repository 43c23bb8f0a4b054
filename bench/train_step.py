"""Training-step speed and memory of lora-lite against PEFT, variant by variant.

One run builds a config-shaped model with random weights, then for each variant attaches the
adapter (lora-lite, then PEFT at its default and with bf16 adapters), times warm-up + N full
training steps (forward, loss, backward, AdamW step) and detaches again. The floor is the frozen
base with gradients forced through every layer (input embeddings require grad), so every row pays
the same backward through the network and the ratio isolates what the adapter costs.

    python bench/train_step.py --device cpu --tiny                 # seconds, on a CPU
    python bench/train_step.py --shape 0.6b                         # H200, Qwen3-0.6B shape
    python bench/train_step.py --shape 8b --batch 8 --seq 1024      # H200, Qwen3-8B shape

Prints a markdown table (step time as a multiple of the floor, peak memory) and writes JSON.
"""
from __future__ import annotations
import argparse, gc, json, math, os, platform, statistics, sys, time, traceback
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from new_variant_specs import new_variant_specs  # noqa: E402  (the ten variants of issue 19, with their PEFT twins)

SHAPES = {  # Qwen3 shapes from the issue; 'tiny' runs in seconds on a CPU
    'tiny': dict(hidden_size=128, num_hidden_layers=2, intermediate_size=256, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=32, vocab_size=512),
    # 'host': the 0.6B layer count at toy widths, so a step is all Python and dispatch: the per-hook
    # host overhead that decides small-model GPU steps, measurable on a CPU
    'host': dict(hidden_size=64, num_hidden_layers=28, intermediate_size=128, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, vocab_size=256),
    '0.6b': dict(hidden_size=1024, num_hidden_layers=28, intermediate_size=3072, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128, vocab_size=151936),
    '8b': dict(hidden_size=4096, num_hidden_layers=36, intermediate_size=12288, num_attention_heads=32,
               num_key_value_heads=8, head_dim=128, vocab_size=151936),
}
TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
ORDER = ['lora', 'dora', 'pissa', 'ia3', 'hra', 'delora', 'vera', 'oft', 'road']
NEW = ['loha', 'lokr', 'boft', 'fourierft', 'shira', 'randlora', 'miss', 'c3a', 'vblora', 'psoft']
ALIASES = {'ia3-kvd': 'ia3', 'oft-neumann': 'oft', 'psoft-lowrank': 'psoft'}  # bench rows that are another configuration of a variant


# ---------------------------------------------------------------------------------------------
# Variant table: the lora-lite config and the PEFT twin, same targets and rank.

def variant_specs(r: int):
    "`{name: (lora-lite config kwargs, PEFT config factory)}`; each side may be None."
    import peft
    T = TARGETS
    return {
        'lora':   (dict(variant='lora', r=r, alpha=2 * r), lambda: peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules=T)),
        'dora':   (dict(variant='dora', r=r, alpha=2 * r), lambda: peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules=T, use_dora=True)),
        'pissa':  (dict(variant='pissa', r=r, alpha=r, options=dict(init='fast', niter=4)), lambda: peft.LoraConfig(r=r, lora_alpha=r, target_modules=T, init_lora_weights='pissa_niter_4')),
        'ia3':    (dict(variant='ia3', target_names=tuple(T)), lambda: peft.IA3Config(target_modules=T, feedforward_modules=['down_proj'])),
        # the IA3 paper's own targets: keys, values, and the feed-forward down projection's input
        'ia3-kvd': (dict(variant='ia3', target_names=(r'k_proj$', r'v_proj$', r'down_proj$')),
                    lambda: peft.IA3Config(target_modules=['k_proj', 'v_proj', 'down_proj'], feedforward_modules=['down_proj'])),
        'hra':    (dict(variant='hra', r=r), lambda: peft.HRAConfig(r=r, target_modules=T)),
        'delora': (dict(variant='delora', r=r), lambda: peft.DeloraConfig(r=r, target_modules=T)),
        'vera':   (dict(variant='vera', r=256), lambda: peft.VeraConfig(r=256, target_modules=T)),
        # OFT twice, the same formula on both sides: the exact Cayley map, and OFTv2's Cayley–Neumann series
        # (PEFT's default, num_cayley_neumann_terms=5, is lora-lite's neumann_order=3)
        'oft':    (dict(variant='oft', options=dict(block_size=32)),
                   lambda: peft.OFTConfig(r=0, oft_block_size=32, target_modules=T, use_cayley_neumann=False)),
        'oft-neumann': (dict(variant='oft', options=dict(block_size=32, neumann_order=3)),
                        lambda: peft.OFTConfig(r=0, oft_block_size=32, target_modules=T, use_cayley_neumann=True, num_cayley_neumann_terms=5)),
        'road':   (dict(variant='road'), lambda: peft.RoadConfig(variant='road_1', group_size=64, target_modules=T)),
    }


def ll_config(kw: dict, compute: str | None):
    "A `LoraLiteConfig` from the table's kwargs, dropping options the installed variant does not declare."
    import lora_lite as ll
    V = ll.get_variant(kw['variant'])
    kw = dict(kw)
    if 'options' in kw: kw['options'] = {k: v for k, v in kw['options'].items() if k in V.options}
    if compute is not None: kw['compute'] = compute
    return ll.LoraLiteConfig(**kw)


def register_levers():
    """Bench-only LoRA twins that measure a lever before (or after) it goes into the library: `_bench_lora_addmm`
    folds the scale into B (an r×d_out op) and fuses the add into the second GEMM (`addmm`, beta=1);
    `_bench_lora_autograd` is LoRA without `LoRALinear` (autograd runs the base layer's backward and adds the two input gradients)."""
    import torch.nn.functional as F
    from lora_lite.variant import cast, layer_cfg
    from lora_lite.lora import LoRA
    class _BenchLoRAAddmm(LoRA):
        name = '_bench_lora_addmm'
        @staticmethod
        def forward(layer, x, y):
            h = F.linear(x, cast(layer.lora_A, x))
            Bs = cast(layer.lora_B, x) * layer_cfg(layer).scale
            return torch.addmm(y.reshape(-1, y.shape[-1]).to(h.dtype), h.reshape(-1, h.shape[-1]), Bs.t()).view(y.shape)
    class _BenchLoRAAutograd(LoRA):
        # LoRA before `LoRALinear`: the same GEMMs, with autograd summing the base's and the adapter's input gradients
        name = '_bench_lora_autograd'
        @staticmethod
        def forward(layer, x, y):
            from lora_lite.speed import add_product
            return add_product(layer, x, y, F.linear(x, cast(layer.lora_A, x)), cast(layer.lora_B, x).T, layer_cfg(layer).scale)
    return {'ll-addmm': '_bench_{}_addmm', 'll-autograd': '_bench_{}_autograd'}


def available_variants(names):
    "Which of `names` lora-lite can import right now (variants land over time)."
    import lora_lite as ll
    out = []
    for n in names:
        try: ll.get_variant(ALIASES.get(n, n)); out.append(n)
        except ValueError: pass
    return out


# ---------------------------------------------------------------------------------------------
# Model, timing, memory.

def build_model(shape: str, dtype, device, layers: int = 0):
    import transformers
    kw = dict(SHAPES[shape], max_position_embeddings=4096, tie_word_embeddings=False, attention_dropout=0.0)
    if layers: kw['num_hidden_layers'] = layers
    cfg = transformers.Qwen3Config(**kw)
    torch.manual_seed(0)
    with torch.device(device):
        m = transformers.AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation='sdpa')
    m.config.use_cache = False
    m.requires_grad_(False)  # the floor is the frozen base (attach/PEFT freeze it too)
    m.enable_input_require_grads()  # gradients forced through every layer, the floor included
    return m.train()


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()


class Timer:
    "CUDA events on a GPU, perf_counter on a CPU; milliseconds."
    def __init__(self, device): self.cuda = device.type == 'cuda'
    def start(self):
        if self.cuda: self.a, self.b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True); self.a.record()
        else: self.t = time.perf_counter()
    def stop(self) -> float:
        if self.cuda: self.b.record(); self.b.synchronize(); return self.a.elapsed_time(self.b)
        return (time.perf_counter() - self.t) * 1e3


def train_step(model, ids, opt):
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    if opt is not None: opt.step(); opt.zero_grad(set_to_none=True)
    return loss


def time_steps(model, ids, params, warmup, steps, device):
    "Median and all step times (ms) of `steps` AdamW training steps after `warmup` ones."
    opt = torch.optim.AdamW(params, lr=1e-5) if params else None
    tm, times = Timer(device), []
    for i in range(warmup + steps):
        tm.start(); loss = train_step(model, ids, opt); t = tm.stop()
        if i >= warmup: times.append(t)
    if not math.isfinite(loss.item()): raise FloatingPointError(f"loss is {loss.item()}")
    return statistics.median(times), times, opt


def profile_step(model, ids, opt, device, top=15):
    "One profiled training step: wall ms, host (self CPU) ms, device ms, kernel launches, and the `top` ops by self device time (CPU time on a CPU)."
    from torch.profiler import profile, ProfilerActivity
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    with profile(activities=acts) as prof:
        t0 = time.perf_counter(); train_step(model, ids, opt); sync(device); wall = (time.perf_counter() - t0) * 1e3
    avg = prof.key_averages()
    key = 'self_device_time_total' if device.type == 'cuda' else 'self_cpu_time_total'
    ev = sorted(avg, key=lambda e: getattr(e, key), reverse=True)[:top]
    launches = sum(e.count for e in avg if e.key in ('cudaLaunchKernel', 'cuLaunchKernel', 'cudaLaunchKernelExC', 'cuLaunchKernelEx'))
    return dict(wall_ms=round(wall, 2), host_ms=round(sum(e.self_cpu_time_total for e in avg) / 1e3, 2),
                device_ms=round(sum(getattr(e, 'self_device_time_total', 0) for e in avg) / 1e3, 2), launches=launches,
                total_ms=sum(getattr(e, key) for e in avg) / 1e3, ops=[(e.key[:80], round(getattr(e, key) / 1e3, 3), e.count) for e in ev])


def peak_gib(device):
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == 'cuda' else float('nan')


def reset_mem(device):
    gc.collect()
    if device.type == 'cuda': torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()


# ---------------------------------------------------------------------------------------------
# One row = attach, time, detach.

def attach_ll(model, kw, compute):
    import lora_lite as ll
    cfg = ll_config(kw, compute)
    ll.attach(model, cfg)
    return ll.trainable_parameters(model), lambda: ll.detach(model), model


def strip_peft(model):
    "Put every base layer PEFT wrapped back in place (also after a failed `get_peft_model`)."
    from peft.tuners.tuners_utils import BaseTunerLayer
    for name, mod in list(model.named_modules()):
        if isinstance(mod, BaseTunerLayer) and name:
            parent, _, child = name.rpartition('.')
            setattr(model.get_submodule(parent) if parent else model, child, mod.get_base_layer())
    for k in ('peft_config', '_hf_peft_config_loaded'):
        if k in vars(model): delattr(model, k)


class CachedRandperm:
    """Within the block, `torch.randperm(n, generator=g)` is drawn once per (n, generator state) and reused: PEFT's
    FourierFT draws a seeded permutation of all d_out·d_in positions for every layer (seconds each at 8B widths,
    minutes for the model), always from a fresh generator with the same seed. Same values, attach time only."""
    def __enter__(self):
        self.orig, cache = torch.randperm, {}
        def randperm(n, *a, generator=None, **kw):
            if generator is None or a or kw: return self.orig(n, *a, generator=generator, **kw)
            key = (n, bytes(generator.get_state().numpy()))
            if key not in cache: cache[key] = self.orig(n, generator=generator)
            return cache[key].clone()   # a repeated draw leaves the generator where it was (PEFT discards it)
        torch.randperm = randperm
    def __exit__(self, *exc): torch.randperm = self.orig


def attach_peft(model, factory, bf16):
    import peft
    try:
        with CachedRandperm(): pm = peft.get_peft_model(model, factory(), autocast_adapter_dtype=not bf16)
    except BaseException: strip_peft(model); raise
    params = [p for p in pm.parameters() if p.requires_grad]
    return params, lambda: strip_peft(model), pm


class StallWatch:
    "Two host-side causes of step-to-step jitter, counted over a block: the caching allocator's retries (a cudaMalloc failed, cached blocks were freed, which synchronizes the device) and Python's garbage-collector pauses."
    def __enter__(self):
        self.gc_ms, self.gc_runs, self._t = 0.0, 0, None
        gc.callbacks.append(self._cb)
        self.retries0 = torch.cuda.memory_stats().get('num_alloc_retries', 0) if torch.cuda.is_available() else 0
        return self

    def _cb(self, phase, info):
        if phase == 'start': self._t = time.perf_counter()
        elif self._t is not None: self.gc_ms += (time.perf_counter() - self._t) * 1e3; self.gc_runs += 1; self._t = None

    def __exit__(self, *exc):
        gc.callbacks.remove(self._cb)
        self.retries = (torch.cuda.memory_stats().get('num_alloc_retries', 0) if torch.cuda.is_available() else 0) - self.retries0


def run_row(model, ids, args, device, variant, impl, setup):
    "Time one configuration; never raises (an error or OOM becomes the row's status)."
    row = dict(variant=variant, impl=impl)
    undo = None
    reset_mem(device)
    try:
        sync(device); t0 = time.perf_counter()
        params, undo, runner = setup()
        sync(device); row['init_s'] = time.perf_counter() - t0
        row['trainable'] = sum(p.numel() for p in params)
        row['adapter_dtype'] = str(params[0].dtype).removeprefix('torch.') if params else None
        if args.compile:  # compile time = the first step's; graph breaks from dynamo's counters
            from torch._dynamo.utils import counters
            torch._dynamo.reset(); counters.clear()
            runner = torch.compile(runner, mode=args.compile_mode)
            sync(device); t0 = time.perf_counter(); train_step(runner, ids, None); sync(device)
            row['compile_s'] = time.perf_counter() - t0
            row['graph_breaks'] = sum(counters['graph_break'].values())
            for p_ in params: p_.grad = None
        with StallWatch() as sw: row['ms'], row['all_ms'], opt = time_steps(runner, ids, params, args.warmup, args.steps, device)
        row['alloc_retries'], row['gc_ms'], row['gc_runs'] = sw.retries, round(sw.gc_ms, 2), sw.gc_runs
        row['peak_gib'] = peak_gib(device); row['status'] = 'ok'
        if args.profile and (args.profile == 'all' or variant in args.profile.split(',')) and impl in args.profile_impls.split(','):
            row['profile'] = profile_step(runner, ids, opt, device)
            pr = row['profile']
            print(f"    profile {variant} {impl}: wall {pr['wall_ms']:.1f} ms, host {pr['host_ms']:.1f} ms, device {pr['device_ms']:.1f} ms, {pr['launches']} launches", flush=True)
        del opt
    except torch.OutOfMemoryError:
        row['status'] = 'OOM'
    except Exception as e:
        row['status'] = f'error: {type(e).__name__}: {str(e)[:200]}'
        if args.verbose: traceback.print_exc()
    finally:
        if undo is not None:
            try: undo()
            except Exception as e: row['status'] += f' (undo failed: {e})'; raise
        for p in model.parameters(): p.grad = None
    reset_mem(device)
    print(f"  {variant:7s} {impl:22s} {row.get('ms', float('nan')):9.2f} ms  {row.get('peak_gib', float('nan')):7.2f} GiB  "
          f"init {row.get('init_s', float('nan')):6.2f} s  {row['status']}"
          + (f"  compile {row['compile_s']:.1f} s, {row['graph_breaks']} graph breaks" if 'compile_s' in row else '')
          + (f"  (steps {min(row['all_ms']):.0f}–{max(row['all_ms']):.0f} ms, alloc retries {row['alloc_retries']}, gc {row['gc_runs']}× {row['gc_ms']:.1f} ms)" if 'alloc_retries' in row else ''), flush=True)
    return row


# ---------------------------------------------------------------------------------------------
# PiSSA initialisation time: full SVD against the fast (randomized) one.

def pissa_init_rows(model, args, device):
    """Attach time of PiSSA with the full SVD and with the fast (randomised) one over the first `--init-layers`
    blocks, extrapolated to the whole model; the fast one runs twice to check it is reproducible."""
    rows, L = [], model.config.num_hidden_layers
    n = min(args.init_layers or L, L)
    layers, cases = tuple(range(n)), []
    if available_variants(['pissa']):
        kw = dict(variant='pissa', r=args.r, alpha=args.r, layers=layers)
        for label, opts in (('lora-lite full SVD', {'init': 'svd'}), ('lora-lite fast SVD', {'init': 'fast', 'niter': 4}),
                            ('lora-lite fast SVD, again', {'init': 'fast', 'niter': 4})):
            cases.append((label, lambda o=opts: _ll_attach_only(model, dict(kw, options=o))))
    if not args.no_peft:
        import peft
        for label, init in (('PEFT full SVD', 'pissa'), ('PEFT fast SVD (niter 4)', 'pissa_niter_4')):
            cases.append((label, lambda init=init: _peft_attach_only(model, peft.LoraConfig(
                r=args.r, lora_alpha=args.r, target_modules=TARGETS, init_lora_weights=init, layers_to_transform=list(layers)))))
    for label, fn in cases:
        reset_mem(device)
        try:
            sync(device); t0 = time.perf_counter(); undo, extra = fn(); sync(device)
            dt = time.perf_counter() - t0; undo()
            rows.append(dict(case=label, layers=n, of_layers=L, init_s=dt, whole_model_s=dt * L / n, **extra))
        except Exception as e:
            rows.append(dict(case=label, layers=n, of_layers=L, status=f'{type(e).__name__}: {str(e)[:200]}'))
        r = rows[-1]
        print(f"  pissa init {label:26s} {r.get('init_s', float('nan')):8.2f} s over {n}/{L} blocks "
              f"(whole model ≈ {r.get('whole_model_s', float('nan')):.1f} s) {r.get('fingerprint', '')} {r.get('status', '')}", flush=True)
    return rows


def _ll_attach_only(model, kw):
    import lora_lite as ll
    cfg = ll_config(kw, None)
    ll.attach(model, cfg)
    before = _pissa_fingerprint(model)
    return (lambda: ll.detach(model)), dict(fingerprint=before)


def _pissa_fingerprint(model):
    "A number that changes if the init changes (reproducibility check between two runs)."
    for m in model.modules():
        if hasattr(m, 'lora_A'): return float(m.lora_A.detach().double().abs().sum())
    return None


def _peft_attach_only(model, cfg):
    import peft
    try: peft.get_peft_model(model, cfg)
    except BaseException: strip_peft(model); raise
    return (lambda: strip_peft(model)), {}


# ---------------------------------------------------------------------------------------------
# Report.

def merged(rows, v, i):
    "The (variant, impl) row, or with --repeat the median time over its ok repeats (largest peak; the spread in `ms_runs`)."
    rs = [r for r in rows if r['variant'] == v and r['impl'] == i]
    ok = [r for r in rs if r['status'] == 'ok']
    if not ok: return rs[0] if rs else None
    if len(ok) == 1: return ok[0]
    return dict(ok[0], ms=statistics.median(r['ms'] for r in ok), peak_gib=max(r['peak_gib'] for r in ok), ms_runs=[r['ms'] for r in ok])


def fmt(row, floor):
    if row is None: return '—'
    if row['status'] != 'ok': return row['status'].split(':')[0]
    spread = f" ({min(row['ms_runs']) / floor:.3f}–{max(row['ms_runs']) / floor:.3f})" if 'ms_runs' in row else ''
    return (f"{row['ms'] / floor:.2f}×{spread} · {row['peak_gib']:.1f} GiB" if not math.isnan(row['peak_gib'])
            else f"{row['ms'] / floor:.2f}×{spread}")


def table(rows, impls):
    floors = [r['ms'] for r in rows if r['variant'] == 'floor' and r['status'] == 'ok']
    floor = statistics.median(floors)
    fl = [r for r in rows if r['variant'] == 'floor' and r['status'] == 'ok'][0]
    out = [f"floor: {floor:.1f} ms/step (runs: {', '.join(f'{f:.1f}' for f in floors)})"
           + (f", peak {fl['peak_gib']:.1f} GiB" if not math.isnan(fl['peak_gib']) else ''), '',
           '| variant | ' + ' | '.join(impls) + ' |', '|---|' + '---|' * len(impls)]
    for v in dict.fromkeys(r['variant'] for r in rows if r['variant'] != 'floor'):
        cells = [fmt(merged(rows, v, i), floor) for i in impls]
        out.append(f'| {v} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(out), floor


def versions():
    import transformers
    v = dict(python=platform.python_version(), torch=torch.__version__, transformers=transformers.__version__)
    try: import peft; v['peft'] = peft.__version__
    except ImportError: v['peft'] = None
    import lora_lite; v['lora_lite'] = lora_lite.__version__
    if torch.cuda.is_available(): v['gpu'] = torch.cuda.get_device_name(); v['cuda'] = torch.version.cuda
    return v


def save_json(args, argv, device, rows, init_rows, md):
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    floors = [r['ms'] for r in rows if r['variant'] == 'floor' and r['status'] == 'ok']
    meta = dict(command='python ' + ' '.join([os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:])),
                versions=versions(), shape=args.shape, layers=args.layers or SHAPES[args.shape]['num_hidden_layers'], model_config=SHAPES[args.shape], batch=args.batch, seq=args.seq,
                r=args.r, compile=args.compile, compile_mode=args.compile_mode, steps=args.steps, warmup=args.warmup, dtype=args.dtype, device=str(device),
                floor_ms=statistics.median(floors) if floors else None, complete=md is not None)
    with open(args.json, 'w') as f: json.dump(dict(meta=meta, rows=rows, pissa_init=init_rows, table=md), f, indent=1)


# ---------------------------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--shape', choices=list(SHAPES), default='0.6b')
    p.add_argument('--tiny', action='store_true', help="shorthand for --shape tiny --batch 2 --seq 64 --steps 5 --warmup 2")
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--dtype', default='bfloat16')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--seq', type=int, default=1024)
    p.add_argument('--r', type=int, default=16)
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--variants', default=','.join(ORDER), help="comma-separated, or 'new' for issue 19's ten; missing lora-lite variants are skipped; also 'ia3-kvd' (IA3 on k, v, down only) and 'oft-neumann' (OFTv2's series, both libraries)")
    p.add_argument('--impls', default='ll,ll-fp32,peft,peft-bf16',
                   help="ll: lora-lite default (impl='auto'); ll-fast: impl='fast' (the fast path on every call); ll-ref: impl='reference'; ll-fp32: compute='adapter'; ll-input: compute='input'; ll-bf16: bf16 storage; ll-addmm, ll-autograd: LoRA levers; peft: PEFT default (fp32 adapters); peft-bf16")
    p.add_argument('--fp32-variants', default='', help="limit ll-fp32 rows to these variants (default: all)")
    p.add_argument('--no-peft', action='store_true')
    p.add_argument('--pissa-init', action='store_true', help='also time PiSSA init, full vs fast SVD')
    p.add_argument('--init-layers', type=int, default=0, help='blocks for the full-SVD timing (0 = all); extrapolated to the whole model')
    p.add_argument('--profile', default='', help="comma-separated variants (or 'all') to profile one extra step of; stored in the JSON")
    p.add_argument('--profile-impls', default='ll', help="which implementations --profile covers (comma-separated)")
    p.add_argument('--repeat', type=int, default=1, help='run the whole variant list this many times; the table shows each row\'s median')
    p.add_argument('--floor-every', type=int, default=0, help='also time the floor after every N variant rows (0: only first and last); the ratio uses the median floor')
    p.add_argument('--layers', type=int, default=0, help="override the shape's number of blocks (0: the shape's own)")
    p.add_argument('--compile', action='store_true', help='torch.compile each row (the floor too); reports compile time and graph breaks')
    p.add_argument('--compile-mode', default=None, help="torch.compile's mode (e.g. reduce-overhead: CUDA graphs, no per-launch host time)")
    p.add_argument('--json', default='')
    p.add_argument('--verbose', action='store_true')
    args = p.parse_args(argv)
    if args.tiny: args.shape, args.batch, args.seq, args.steps, args.warmup = 'tiny', 2, 64, 5, 2
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    impls = args.impls.split(',')
    if args.no_peft: impls = [i for i in impls if not i.startswith('peft')]
    try: import peft  # noqa: F401
    except ImportError: impls = [i for i in impls if not i.startswith('peft')]; print('peft not installed: PEFT rows skipped')
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import lora_lite  # noqa: F401

    t0 = time.perf_counter()
    model = build_model(args.shape, dtype, device, args.layers)
    print(f"built {args.shape} ({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params, {args.dtype}) on {device} "
          f"in {time.perf_counter() - t0:.1f} s; batch {args.batch}x{args.seq}", flush=True)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0)).to(device)

    names = [w for v in args.variants.split(',') if v for w in (NEW if v == 'new' else [v])]
    have = available_variants(names)
    if missing := [v for v in names if v not in have]: print(f"lora-lite has no {missing} yet: their lora-lite rows are skipped")
    specs = {**variant_specs(args.r), **new_variant_specs(args.r, SHAPES[args.shape])}
    fp32_only = set(args.fp32_variants.split(',')) if args.fp32_variants else None
    compute_of = {'ll': None, 'll-fp32': 'adapter', 'll-input': 'input', 'll-fast': None, 'll-ref': None}
    impl_of = {'ll-fast': 'fast', 'll-ref': 'reference'}
    levers = register_levers()

    for _ in range(2): train_step(model, ids, None)  # global warm-up: kernels, allocator, autotuning
    sync(device); model.zero_grad(set_to_none=True)
    rows = []
    def add(row):  # each row is saved as it comes, so a run cut short keeps what it measured
        rows.append(row)
        if args.json: save_json(args, argv, device, rows, [], None)
    add(run_row(model, ids, args, device, 'floor', 'frozen base', lambda: ([], None, model)))
    for i, v in enumerate([v for _ in range(args.repeat) for v in names]):
        if i and args.floor_every and i % args.floor_every == 0:
            add(run_row(model, ids, args, device, 'floor', 'frozen base', lambda: ([], None, model)))
        llkw, pf = specs[v]
        for impl in impls:
            if impl in levers:
                lv = levers[impl].format(v)
                if not available_variants([lv]): continue
                setup = lambda kw=dict(llkw, variant=lv): attach_ll(model, kw, None)
            elif impl == 'll-bf16':  # bf16 adapter storage (PEFT bf16's layout): no per-call casts, half the optimizer state
                if v not in have: continue
                setup = lambda kw=dict(llkw, dtype='bfloat16'): attach_ll(model, kw, 'input')
            elif impl in compute_of:
                if v not in have or (impl == 'll-fp32' and fp32_only is not None and v not in fp32_only): continue
                kw = dict(llkw, impl=impl_of[impl]) if impl in impl_of else llkw
                setup = lambda kw=kw, c=compute_of[impl]: attach_ll(model, kw, c)
            else:
                setup = lambda f=pf, bf=impl == 'peft-bf16': attach_peft(model, f, bf)
            add(run_row(model, ids, args, device, v, impl, setup))
    add(run_row(model, ids, args, device, 'floor', 'frozen base', lambda: ([], None, model)))
    init_rows = pissa_init_rows(model, args, device) if args.pissa_init else []

    md, floor = table(rows, impls)
    for r in rows:
        if r['status'] == 'ok': r['x_floor'] = r['ms'] / floor
    print('\n' + md)
    if init_rows:
        print('\n| PiSSA init | blocks timed | s | whole model s |\n|---|---|---|---|')
        for r in init_rows: print(f"| {r['case']} | {r['layers']}/{r['of_layers']} | {r.get('init_s', float('nan')):.2f} | {r.get('whole_model_s', float('nan')):.1f} |")
    if args.json: save_json(args, argv, device, rows, init_rows, md); print(f"wrote {args.json}")
    return rows


if __name__ == '__main__':
    main()
