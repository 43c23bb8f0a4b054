"""Speed features must not change what is computed.

The fast paths run here (`impl='fast'`): `impl='auto'` would take the references on these tiny layers.

- `torch.compile` of a whole model with adapters attached traces the hooks (one graph, no breaks)
  and matches eager, forward and gradients;
- gradient checkpointing (reentrant and not) gives the adapters the same gradients as none;
- computing in the activations' dtype (`compute='input'`, what `'auto'` picks for bf16 on a GPU)
  keeps small updates: parameters stay float32, so an update far below bf16's resolution is kept
  and accumulates, and the bf16-compute gradients agree with float32-compute ones.
"""
import importlib, pytest, torch
import lora_lite as ll
from lora_lite.variant import Variant, ParamSpec, cast
from lora_lite.speed import CONSTANTS
from lora_lite.testing import tiny_qwen3, token_input, perturb_, max_diff

ALL = ['lora', 'dora', 'pissa', 'ia3', 'hra', 'delora', 'vera', 'oft', 'road', 'loha', 'boft', 'lokr', 'miss', 'c3a',
       'randlora', 'shira', 'fourierft', 'vblora']


def _have(name):
    try: ll.get_variant(name); return True
    except ValueError: return False


VARIANTS = [v for v in ALL if _have(v)]
CFG_KW = {'vera': dict(r=8), 'oft': dict(options=dict(block_size=16)), 'fourierft': dict(options=dict(n_frequency=64)),
          'vblora': dict(options=dict(num_vectors=32, vector_length=8)),
          'oft-neumann': dict(variant='oft', options=dict(block_size=16, neumann_order=3))}
CASES = VARIANTS + (['oft-neumann'] if 'oft' in VARIANTS else [])   # a variant's second code path, by its config


def cfg_for(v, **kw):
    base = dict(variant=v, r=4, alpha=8, impl='fast')
    base.update(CFG_KW.get(v, {}))
    v = base['variant']
    V = ll.get_variant(v)
    if 'options' in base: base['options'] = {k: o for k, o in base['options'].items() if k in V.options}
    base.update(kw)
    return ll.LoraLiteConfig(**base)


def adapted(v, model_dtype=torch.float32, layers=2, **kw):
    "The tiny Qwen3 (`layers` decoder layers) with `v` attached, its adapter perturbed."
    torch.manual_seed(0)
    m = tiny_qwen3(dtype=model_dtype, num_hidden_layers=layers)
    ll.attach(m, cfg_for(v, **kw))
    perturb_(m, scale=0.05)
    return m


def loss_and_grads(m, ids):
    m.zero_grad(set_to_none=True)
    out = m(ids).logits
    loss = out.float().pow(2).mean()
    loss.backward()
    return out.detach(), {n.removeprefix("_orig_mod."): p.grad.detach().clone() for n, p in m.named_parameters() if p.requires_grad}


def checkpointing_on(m, reentrant):
    "Turn on transformers' activation checkpointing (the deprecated name on older transformers)."
    kw = {'use_reentrant': reentrant}
    if hasattr(m, 'activation_checkpointing_enable'): m.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
    else: m.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
    assert m.model.gradient_checkpointing


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


# --------------------------------------------------------------------------------------------
# torch.compile
# On one decoder layer: compile time grows with the graph, and one layer already runs every hook of the variant on all
# seven projections (q/o and gate/up share shapes, so the cached constants are built once and then reused).

@pytest.mark.parametrize('v', CASES)
def test_compile_matches_eager(v):
    "Dynamo traces every hook in one graph (`fullgraph=True`), and the compiled step equals eager."
    ids = token_input()
    m = adapted(v, layers=1)
    y0, g0 = loss_and_grads(m, ids)
    torch._dynamo.reset()
    CONSTANTS.clear()   # the compiled step must also build the variants' cached constants itself (as when it runs first)
    mc = torch.compile(m, backend='aot_eager', fullgraph=True)
    y1, g1 = loss_and_grads(mc, ids)
    assert max_diff(y1, y0) <= 1e-5, f"{v}: compiled forward differs by {max_diff(y1, y0):.2e}"
    assert g1.keys() == g0.keys() and g0
    bad = {n: rel(g1[n], g0[n]) for n in g0 if rel(g1[n], g0[n]) > 1e-5}
    assert not bad, f"{v}: compiled gradients differ: {bad}"


TOY = {'fourierft': {'n_frequency': 64}, 'vblora': {'num_vectors': 32, 'vector_length': 8}}   # 32/64-wide layers


@pytest.mark.parametrize('v', [v for v in ll.all_variants() if v not in VARIANTS])
def test_compile_auto_every_variant(v):
    "Every other shipped variant under the default `impl='auto'` (its reference while compiling): one graph, same step."
    ids, V = token_input(), ll.get_variant(v)
    torch.manual_seed(0)
    m = tiny_qwen3(num_hidden_layers=1)
    calib = [token_input(seed=s) for s in range(2)] if V.needs_calibration else None
    ll.attach(m, ll.LoraLiteConfig(variant=v, r=4, alpha=8, options=TOY.get(v, {})), calibration_data=calib)
    perturb_(m, scale=0.05)
    y0, g0 = loss_and_grads(m, ids)
    torch._dynamo.reset()
    y1, g1 = loss_and_grads(torch.compile(m, backend='eager', fullgraph=True), ids)
    assert max_diff(y1, y0) <= 1e-5, f"{v}: compiled forward differs by {max_diff(y1, y0):.2e}"
    assert g1.keys() == g0.keys() and g0
    bad = {n: rel(g1[n], g0[n]) for n in g0 if rel(g1[n], g0[n]) > 1e-5}
    assert not bad, f"{v}: compiled gradients differ: {bad}"


def test_auto_compiles_without_size_guards():
    "While compiling, 'auto' takes the reference without a guard on the token count: one graph for 4 and 40 tokens."
    from lora_lite.speed import register_fast
    from torch._dynamo.utils import counters
    calls = []
    class _Scale(Variant):
        name = '_compile_scale_demo'
        @staticmethod
        def param_specs(d_in, d_out, cfg): return {'lora_g': ParamSpec((d_out,), 'ones')}
        @staticmethod
        def forward(layer, x, y): return y * cast(layer.lora_g, y)
    def fast(layer, x, y):
        calls.append(x.shape[0])
        return y * cast(layer.lora_g, y)
    register_fast(_Scale, forward=fast, min_work=1000)   # eager: 40 tokens (40*8*8 = 2560) would take it
    m = torch.nn.Sequential(torch.nn.Linear(8, 8))
    ll.attach(m, ll.LoraLiteConfig(variant=_Scale))
    torch._dynamo.reset()
    counters.clear()
    mc = torch.compile(m, backend='eager', dynamic=True)
    for n in (4, 40): mc(torch.randn(n, 8))
    assert calls == [] and counters['stats']['unique_graphs'] == 1, (calls, dict(counters['stats']))
    m(torch.randn(40, 8))
    assert calls == [40]


def test_compile_inductor_lora():
    "The real compiler (inductor, generated kernels) on LoRA: same output and gradients as eager."
    ids = token_input()
    m = adapted('lora', layers=1)
    y0, g0 = loss_and_grads(m, ids)
    torch._dynamo.reset()
    y1, g1 = loss_and_grads(torch.compile(m, fullgraph=True), ids)
    assert max_diff(y1, y0) <= 1e-4
    assert all(rel(g1[n], g0[n]) <= 1e-4 for n in g0), {n: rel(g1[n], g0[n]) for n in g0}


# --------------------------------------------------------------------------------------------
# Gradient checkpointing

@pytest.mark.parametrize('reentrant', [False, True])
@pytest.mark.parametrize('v', CASES)
def test_checkpointing_same_gradients(v, reentrant):
    "Recomputing each block in backward (reentrant or not) gives every adapter tensor the gradient it gets without."
    ids = token_input()
    m = adapted(v); m.train()
    _, g0 = loss_and_grads(m, ids)
    checkpointing_on(m, reentrant)
    _, g1 = loss_and_grads(m, ids)
    assert g1.keys() == g0.keys() and g0
    missing = [n for n in g0 if g1[n] is None or not g1[n].abs().sum() and g0[n].abs().sum()]
    assert not missing, f"no gradient under checkpointing for {missing[:4]}"
    bad = {n: rel(g1[n], g0[n]) for n in g0 if rel(g1[n], g0[n]) > 1e-5}
    assert not bad, f"{v}, use_reentrant={reentrant}: gradients differ: {bad}"


def test_checkpointing_can_fail():
    "The comparison above can fail: a block that runs differently in recompute gives other gradients."
    ids = token_input()
    m = adapted('lora'); m.train()
    _, g0 = loss_and_grads(m, ids)
    layer = m.model.layers[0].self_attn.q_proj
    calls = []
    def flaky(mod, args, y):
        calls.append(1)
        return y * 1.5 if len(calls) % 2 == 0 else y  # the recompute sees another function
    h = layer.register_forward_hook(flaky)
    checkpointing_on(m, False)
    _, g1 = loss_and_grads(m, ids)
    h.remove()
    assert max(rel(g1[n], g0[n]) for n in g0) > 1e-3


# --------------------------------------------------------------------------------------------
# Computing in the activations' dtype

class _PerfScale(Variant):
    "IA3-like: `y * l`, l a float32 vector starting at 1 (the hardest case for bf16: 1 + 1e-4 == 1)."
    name = '_perf_scale'
    @staticmethod
    def param_specs(d_in, d_out, cfg): return {'lora_l': ParamSpec((d_out,), 'ones')}
    @staticmethod
    def forward(layer, x, y): return y * cast(layer.lora_l, y)


def test_auto_default():
    "`'auto'` is the default; on a CPU it computes in the adapter dtype, as before."
    cfg = ll.LoraLiteConfig()
    assert cfg.compute == 'auto'
    m = tiny_qwen3(dtype=torch.bfloat16); ll.attach(m, ll.LoraLiteConfig(variant='lora', r=4))
    seen = []
    V = ll.get_variant('lora')
    lyr = m.model.layers[0].self_attn.q_proj
    h = lyr.register_forward_pre_hook(lambda mod, a: seen.append(a[0].dtype))
    m(token_input())
    h.remove()
    assert seen == [torch.bfloat16]
    from lora_lite.adapter import _compute_dtype
    assert _compute_dtype(cfg, torch.zeros(1, dtype=torch.bfloat16)) == torch.float32
    assert _compute_dtype(cfg, torch.empty(1, dtype=torch.bfloat16, device='meta')) is None


@pytest.mark.parametrize('compute', ['input', 'adapter'])
def test_small_updates_survive(compute):
    """A float32 parameter at 1.0 takes 100 steps of 1e-4 (each far below bf16's spacing of 2**-7 at 1.0):
    they all accumulate, whatever the compute dtype; a bf16-stored parameter keeps none of them."""
    ids = token_input()
    def run(dtype, compute):
        torch.manual_seed(0)
        m = tiny_qwen3(dtype=torch.bfloat16)
        ll.attach(m, ll.LoraLiteConfig(variant='_perf_scale', dtype=dtype, compute=compute))
        p = m.model.layers[0].mlp.down_proj.lora_l
        opt = torch.optim.SGD(ll.trainable_parameters(m), lr=1.0)
        for _ in range(100):
            for q in ll.trainable_parameters(m): q.grad = torch.full_like(q, -1e-4)  # a fixed tiny step: +1e-4 each
            opt.step()
        return p.detach().float()
    kept, lost = run('float32', compute), run('bfloat16', compute)
    assert torch.allclose(kept, torch.full_like(kept, 1.01), atol=1e-5), kept[:4]
    assert torch.equal(lost, torch.ones_like(lost)), "bf16 storage should lose 1e-4 updates at 1.0"


def test_input_compute_learns_like_float32():
    "Real gradients: 20 AdamW steps at lr 1e-4 with bf16 compute move the float32 scales like float32 compute does."
    ids = token_input()
    def run(compute):
        torch.manual_seed(0)
        m = tiny_qwen3(dtype=torch.bfloat16)
        ll.attach(m, ll.LoraLiteConfig(variant='_perf_scale', compute=compute))
        opt = torch.optim.AdamW(ll.trainable_parameters(m), lr=1e-4, weight_decay=0.0)
        for _ in range(20):
            loss = m(ids, labels=ids).loss
            opt.zero_grad(); loss.backward(); opt.step()
        return torch.cat([p.detach().flatten() for p in ll.trainable_parameters(m)]) - 1
    d_in, d_ad = run('input'), run('adapter')
    assert d_ad.abs().max() > 1e-3  # the scales really moved, by less than bf16 resolves at 1.0 per step
    assert rel(d_in, d_ad) < 0.1, rel(d_in, d_ad)


def identity_gaps(v, ids, **settings):
    "`{name: max |Δlogits|}` between a bf16 tiny Qwen3 and the same model with `v` attached (`cfg_for(v, **kw)`), at init, per named setting."
    torch.manual_seed(0)
    base = tiny_qwen3(dtype=torch.bfloat16)
    with torch.no_grad(): y_base = base(ids).logits
    gaps = {}
    for name, kw in settings.items():
        m = tiny_qwen3(dtype=torch.bfloat16); ll.attach(m, cfg_for(v, **kw))
        with torch.no_grad(): gaps[name] = max_diff(m(ids).logits, y_base)
    return gaps


@pytest.mark.parametrize('v', CASES)
def test_input_compute_numerics(v):
    """Every variant on a bf16 model: compute='input' is the identity at init whenever float32 compute is, and
    its outputs and gradients are as close to a float32 model's as float32 compute's are (bf16 noise, not worse)."""
    ids = token_input()
    d_id = identity_gaps(v, ids, input=dict(compute='input'), adapter=dict(compute='adapter'))
    # exact stays exact; a variant that rewrites the bf16 weight (PiSSA's W_res) is off by rounding either way
    assert d_id['input'] <= 2 * d_id['adapter'], f"{v}: compute='input' is further from the identity at init: {d_id}"
    y32, g32 = loss_and_grads(adapted(v, torch.float32), ids)
    y_in, g_in = loss_and_grads(adapted(v, torch.bfloat16, compute='input'), ids)
    y_ad, g_ad = loss_and_grads(adapted(v, torch.bfloat16, compute='adapter'), ids)
    assert rel(y_in, y32) <= 2 * rel(y_ad, y32) + 1e-2, f"{v}: outputs {rel(y_in, y32):.2e} vs {rel(y_ad, y32):.2e} off float32"
    # per kind of tensor over all layers: one scalar (DeLoRA's λ) is a full reduction, bf16 noise of 2-20% either way
    kind = lambda g, k: torch.cat([t.flatten() for n, t in g.items() if n.rsplit('.', 1)[-1] == k])
    kinds = {n.rsplit('.', 1)[-1] for n in g32}
    err = {k: (rel(kind(g_in, k), kind(g32, k)), rel(kind(g_ad, k), kind(g32, k))) for k in kinds}
    worse = {k: e for k, e in err.items() if e[0] > 2 * e[1] + 1e-2}
    assert not worse, f"{v}: bf16-compute gradients further from float32 than float32-compute ones: {worse}"


@pytest.mark.parametrize('v', CASES)
def test_bf16_storage(v):
    """Every variant with bf16 adapter storage (`dtype='bfloat16'`, the layout of PEFT's bf16 adapters) on a bf16 model: the
    identity at init as close as with float32 storage, and one backward gives every adapter tensor a finite, nonzero bf16
    gradient, as close to float32 storage's as bf16 allows (HRA once failed here: no triangular solve in bf16)."""
    ids = token_input()
    d_id = identity_gaps(v, ids, bfloat16=dict(dtype='bfloat16'), float32=dict(dtype='float32'))
    assert d_id['bfloat16'] <= 2 * d_id['float32'] + 1e-6, f"{v}: bf16 storage is further from the identity at init: {d_id}"
    m16 = adapted(v, torch.bfloat16, dtype='bfloat16')
    m32, m32r = adapted(v, torch.bfloat16), adapted(v, torch.bfloat16)
    with torch.no_grad():   # m32r: float32 storage holding exactly m16's (bf16-rounded) values
        p16 = dict(m16.named_parameters())
        for n, p in m32r.named_parameters():
            if p.requires_grad: p.copy_(p16[n])
    (_, g16), (_, g32), (_, g32r) = (loss_and_grads(m, ids) for m in (m16, m32, m32r))
    assert g16.keys() == g32.keys() and g16
    assert all(g.dtype == torch.bfloat16 and torch.isfinite(g).all() for g in g16.values())
    assert all(g.abs().sum() > 0 for g in g16.values()), [n for n, g in g16.items() if not g.abs().sum()]
    # same values, other storage: no further from float32 storage than rounding the values alone moves it (bf16 noise, not worse)
    kind = lambda g, k: torch.cat([t.float().flatten() for n, t in g.items() if n.rsplit('.', 1)[-1] == k])
    err = {k: (rel(kind(g16, k), kind(g32r, k)), rel(kind(g32r, k), kind(g32, k))) for k in {n.rsplit('.', 1)[-1] for n in g32}}
    worse = {k: e for k, e in err.items() if e[0] > 2 * e[1] + 2e-2}
    assert not worse, f"{v}: bf16-storage gradients further off than bf16 rounding of the values: {worse}"


# --------------------------------------------------------------------------------------------
# torch.func: the variants the README lists as plain ops (or with a setup_context Function)

@pytest.mark.parametrize('v', [v for v in ('lora', 'pissa', 'dora', 'vera', 'ia3') if v in VARIANTS])
def test_torch_func_grad_matches_autograd(v):
    "`torch.func.grad` over `functional_call` gives the adapter gradients ordinary backprop gives (fast paths step aside under transforms)."
    ids = token_input()
    m = adapted(v)
    params = {n: p.detach() for n, p in m.named_parameters() if p.requires_grad}
    _, g_ref = loss_and_grads(m, ids)
    def loss(p): return torch.func.functional_call(m, p, (ids,)).logits.float().pow(2).mean()
    g = torch.func.grad(loss)(params)
    bad = {n: rel(g[n], g_ref[n]) for n in params if rel(g[n], g_ref[n]) > 1e-5}
    assert not bad, f"{v}: torch.func gradients differ: {bad}"
