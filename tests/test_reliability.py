"""Reliability (issue 16): no data loss, no silent wrong result, no hang from a config or an adapter file.

Each test names the issue item it guards; each failed on the library before the fix (49f3142).
Variant-specific items (PiSSA tied weights, DoRA's norm, option ranges) live in the variants' notebooks.
"""
import copy, io, json, os, pickle, stat, subprocess, sys, textwrap, time
from dataclasses import FrozenInstanceError, replace

import pytest
import torch
from torch import nn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import lora_lite as ll
from lora_lite.variant import SHIPPED, ParamSpec
from lora_lite.testing import tiny_model, tiny_input, perturb_, outputs, max_diff, train_steps

X = tiny_input()


TINY_OPTIONS = {'fourierft': {'n_frequency': 64, 'scaling': 50.0},   # the defaults need wider layers than 16
                'vblora': {'num_vectors': 32, 'vector_length': 8}}

def attached(variant='lora', seed=0, perturb=True, **kw):
    "A `tiny_model(seed)` with `variant` attached (reference implementation), lora_* perturbed."
    m = tiny_model(seed)
    kw = {'options': TINY_OPTIONS.get(variant, {}), 'impl': 'reference', **kw}
    cfg = ll.LoraLiteConfig(variant=variant, r=4, **kw)
    ll.attach(m, cfg, calibration_data=[tiny_input(seed=2)] if variant == 'eva' else None)
    return perturb_(m) if perturb else m


def out(m):
    with torch.no_grad(): return outputs(m, X)


def craft(src, dst, meta=None, tensors=None):
    "Copy the adapter file `src` to `dst` with metadata fields replaced (None drops one) and/or other tensors."
    with safe_open(str(src), 'pt') as f: m = f.metadata()
    m = {k: v for k, v in {**m, **(meta or {})}.items() if v is not None}
    save_file(tensors if tensors is not None else load_file(src), str(dst), metadata=m)
    return dst


@pytest.fixture
def saved(tmp_path):
    "An adapter file of a perturbed LoRA on `tiny_model(0)`, and the output it gives."
    m = attached()
    return ll.save(m, tmp_path / 'a.safetensors'), out(m)


# --- 2. detach and save touch only what lora-lite added -----------------------------------------------------

def test_2_layer_with_own_lora_names_is_refused():
    m = tiny_model()
    m.layers[0].q_proj.lora_gate = nn.Parameter(torch.ones(16))
    m.layers[0].v_proj.register_buffer('lora_mask', torch.ones(16))
    m.layers[0].k_proj.lora_enabled = True
    with pytest.raises(ValueError, match=r"cannot adapt 'layers.0.k_proj': it already has \['lora_enabled'\].*Rename"):
        ll.attach(m, ll.LoraLiteConfig(target_names=('k_proj',)))
    for name in ('q_proj', 'v_proj'):
        with pytest.raises(ValueError, match=f"cannot adapt 'layers.0.{name}'"):
            ll.attach(m, ll.LoraLiteConfig(target_names=(name,)))
    assert not ll.is_attached(m) and all(p.requires_grad for p in m.parameters())


def test_2_user_lora_names_elsewhere_survive_save_and_detach(tmp_path):
    m = tiny_model()
    m.lm_head.lora_gate = nn.Parameter(torch.ones(8))
    m.lm_head.register_buffer('lora_mask', torch.ones(8))
    m.lm_head.lora_enabled = True
    y0 = out(m)
    ll.attach(m, ll.LoraLiteConfig(impl='reference'))
    assert not any(k.startswith('lm_head') for k in ll.adapter_state_dict(m))
    path = ll.save(m, tmp_path / 'a.safetensors')
    assert not any(k.startswith('lm_head') for k in load_file(path))
    ll.detach(m)
    assert (m.lm_head.lora_gate.shape, m.lm_head.lora_mask.shape, m.lm_head.lora_enabled) == ((8,), (8,), True)
    assert max_diff(out(m), y0) == 0


# --- 3. an attached model pickles, deep-copies and torch.saves, and the copy's adapter works -----------------

PICKLE_CASES = [('lora', {}), ('hra', {}), ('oft', {}), ('ia3', {'options': {'mode': 'input'}})]

@pytest.mark.parametrize('variant,kw', PICKLE_CASES, ids=[c[0] for c in PICKLE_CASES])
def test_3_attached_model_pickles(variant, kw, tmp_path):
    m = attached(variant, **kw)
    y, y_base = out(m), out(tiny_model())
    torch.save(m, tmp_path / 'model.pt')
    copies = [torch.load(tmp_path / 'model.pt', weights_only=False), pickle.loads(pickle.dumps(m)), copy.deepcopy(m)]
    for c in copies:
        assert max_diff(out(c), y) == 0
        path = ll.save(c, tmp_path / 'c.safetensors')
        fresh = tiny_model()
        ll.load(fresh, path)
        assert max_diff(out(fresh), y) == 0
        losses = train_steps(c, X, steps=3)
        assert losses[-1] < losses[0]
        ll.detach(c)
        assert max_diff(out(c), y_base) == 0
    assert max_diff(out(m), y) == 0


# --- 5. load_state_dict of an attached model's own state reproduces its outputs, for every variant -----------

@pytest.mark.parametrize('variant', sorted(SHIPPED))
def test_5_load_state_dict_reproduces_outputs(variant):
    m1 = attached(variant, seed=0)
    m2 = attached(variant, seed=1, perturb=False)
    assert max_diff(out(m1), out(m2)) > 0
    m2.load_state_dict(m1.state_dict())
    assert max_diff(out(m2), out(m1)) == 0


@pytest.mark.parametrize('impl', ['reference', 'fast'])
@pytest.mark.parametrize('variant', sorted(SHIPPED))
def test_5_empty_batch_passes_through(variant, impl):
    "A call with no tokens (an empty batch, an expert that got none) returns an empty output and backpropagates."
    from lora_lite.speed import fast_path
    if impl == 'fast' and fast_path(ll.get_variant(variant)) is None: pytest.skip('no fast path')
    m = attached(variant, impl=impl)
    x = torch.randn(0, 6, 16, requires_grad=True)
    y = m(x)
    assert y.shape[:2] == (0, 6)
    y.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize('variant', sorted(SHIPPED))
def test_12_every_variant_reloads_through_the_declared_shape_check(variant, tmp_path):
    "`load` checks a file against `param_specs` before attaching: every shipped variant's own file passes it."
    m = attached(variant)
    fresh = tiny_model()
    ll.load(fresh, ll.save(m, tmp_path / 'a.safetensors'))
    assert max_diff(out(fresh), out(m)) == 0


# --- 6. non-finite and absurd numbers are refused when the config is built -----------------------------------

@pytest.mark.parametrize('kw', [dict(alpha=float('inf')), dict(alpha=float('nan')), dict(alpha=1e308), dict(alpha=10**400),
                                dict(dropout=float('nan')), dict(dropout=float('inf')),
                                dict(variant='vera', options={'d_initial': float('nan')}),
                                dict(variant='vera', options={'d_initial': float('inf')}),
                                dict(variant='hra', options={'ortho_weight': float('inf')})],
                         ids=['alpha inf', 'alpha nan', 'alpha 1e308', 'alpha 10**400', 'dropout nan', 'dropout inf',
                              'vera d_initial nan', 'vera d_initial inf', 'hra ortho_weight inf'])
def test_6_non_finite_numbers_refused(kw):
    with pytest.raises(ValueError, match='finite|MAX_SCALE|probability'):
        ll.LoraLiteConfig(**kw)


def test_6_scale_bound_is_inclusive():
    from lora_lite.config import MAX_SCALE
    assert ll.LoraLiteConfig(r=1, alpha=MAX_SCALE).scale == MAX_SCALE
    with pytest.raises(ValueError, match='MAX_SCALE'): ll.LoraLiteConfig(r=1, alpha=MAX_SCALE * 1.01)


# --- 7. a config is immutable: attach's copy cannot be changed behind its back ------------------------------

def test_7_config_is_immutable(tmp_path):
    opts = {'d_initial': 0.1}
    cfg = ll.LoraLiteConfig(variant='vera', r=4, impl='reference', options=opts)
    m = tiny_model()
    ll.attach(m, cfg)
    perturb_(m)
    y = out(m)
    for field, value in (('alpha', 64.0), ('r', 0), ('options', {})):
        with pytest.raises(FrozenInstanceError): setattr(cfg, field, value)
    with pytest.raises(TypeError, match='immutable'): cfg.options['d_initial'] = 5.0
    opts['d_initial'] = 5.0
    assert cfg.options['d_initial'] == 0.1 and max_diff(out(m), y) == 0
    saved = ll.adapter.read_adapter(ll.save(m, tmp_path / 'a.safetensors'))[0]
    assert saved == cfg and hash(saved) == hash(cfg)
    assert replace(cfg, alpha=32.0).alpha == 32.0 and replace(cfg, impl='auto').impl == 'auto'
    with pytest.raises(ValueError, match='positive int'): replace(cfg, r=0)


# --- 8, 9, 13 and unclear errors: a file is checked, field by field ------------------------------------------

def test_8_file_config_missing_field_is_named(saved, tmp_path):
    path, _ = saved
    with safe_open(str(path), 'pt') as f: d = json.loads(f.metadata()['lora_lite_config'])
    for field in ('alpha', 'r', 'options'):
        bad = craft(path, tmp_path / f'no_{field}.st', {'lora_lite_config': json.dumps({k: v for k, v in d.items() if k != field})})
        with pytest.raises(ValueError, match=rf"lacks the fields \['{field}'\]"): ll.load(tiny_model(), bad)


@pytest.mark.parametrize('tensor,match', [(torch.ones(4, 16, dtype=torch.int64), r'\(I64\)'),
                                          (torch.ones(4, 16, dtype=torch.bool), r'\(BOOL\)'),
                                          (torch.full((4, 16), float('nan')), 'NaN or infinite'),
                                          (torch.full((4, 16), float('inf')), 'NaN or infinite')], ids=['int64', 'bool', 'nan', 'inf'])
def test_9_file_tensors_must_be_finite_floats(saved, tmp_path, tensor, match):
    path, _ = saved
    sd = load_file(path)
    key = 'layers.0.q_proj.lora_A'
    bad = craft(path, tmp_path / 'bad.st', tensors={**sd, key: tensor})
    m = tiny_model()
    with pytest.raises(ValueError, match=match) as e: ll.load(m, bad)
    assert key in str(e.value) and not ll.is_attached(m)


def test_13_format_version(saved, tmp_path):
    path, y = saved
    with safe_open(str(path), 'pt') as f: assert f.metadata()['lora_lite_format'] == str(ll.adapter.FORMAT) == '1'
    cases = {'newer': ({'lora_lite_format': '2'}, 'format 2, newer than format 1'),
             'none': ({'lora_lite_format': None}, 'has no lora_lite_format'),
             'junk': ({'lora_lite_format': 'x' * 10**5}, 'must be a positive integer'),
             'no config': ({'lora_lite_config': None}, r"lacks the metadata fields \['lora_lite_config'\]"),
             'no targets': ({'lora_lite_targets': None}, r"lacks the metadata fields \['lora_lite_targets'\]")}
    for name, (meta, match) in cases.items():
        with pytest.raises(ValueError, match=match): ll.load(tiny_model(), craft(path, tmp_path / f'{name}.st', meta))
    m = tiny_model()
    ll.load(m, path)
    assert max_diff(out(m), y) == 0


@pytest.mark.parametrize('meta,match', [({'lora_lite_config': '{"r": 4'}, 'lora_lite_config: the stored config is not valid JSON'),
                                        ({'lora_lite_config': '[4, 8]'}, 'lora_lite_config: a stored config must be a JSON object'),
                                        ({'lora_lite_targets': '["layers.0'}, 'lora_lite_targets is not valid JSON'),
                                        ({'lora_lite_targets': '[1, 2]'}, 'lora_lite_targets must be a non-empty JSON list of module names'),
                                        ({'lora_lite_targets': '{"a": 1}'}, 'lora_lite_targets must be a non-empty JSON list')],
                         ids=['config json', 'config list', 'targets json', 'numeric targets', 'targets dict'])
def test_unclear_metadata_errors_name_the_field(saved, tmp_path, meta, match):
    path, _ = saved
    with pytest.raises(ValueError, match=match) as e: ll.load(tiny_model(), craft(path, tmp_path / 'bad.st', meta))
    assert 'bad.st' in str(e.value)


def test_unclear_config_errors():
    with pytest.raises(TypeError, match="options must be a dict of 'lora' option names"): ll.LoraLiteConfig(options='abc')
    with pytest.raises(TypeError, match='target_names must be a regex string or a list/tuple of them, got 5'):
        ll.LoraLiteConfig(target_names=5)
    with pytest.raises(ValueError, match=r'\(5000002 characters\)'): ll.LoraLiteConfig(variant='x' * 5_000_000)


def test_unclear_file_errors(saved, tmp_path):
    path, _ = saved
    with pytest.raises(IsADirectoryError, match='is a directory'): ll.load(tiny_model(), tmp_path)
    (tmp_path / 'garbage.st').write_bytes(b'\x07' * 100)
    with pytest.raises(ValueError, match='garbage.st.*not a readable safetensors file'): ll.load(tiny_model(), tmp_path / 'garbage.st')
    with pytest.raises(FileNotFoundError, match='no adapter file'): ll.load(tiny_model(), tmp_path / 'missing.st')
    with pytest.raises(IsADirectoryError, match='give ll.save a file path'): ll.save(attached(), tmp_path)


# --- 11. load takes the targets from the file's list, never from its regexes ---------------------------------

HANG = textwrap.dedent('''
    import json, sys, time, torch
    from torch import nn
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    import lora_lite as ll
    def model():
        torch.manual_seed(0)
        m = nn.Module()
        m.an_encoder_with_a_rather_long_module_name = nn.Module()
        m.an_encoder_with_a_rather_long_module_name.projection_with_a_long_name = nn.Linear(8, 8)
        return m
    path = sys.argv[1]
    m = model()
    ll.attach(m, ll.LoraLiteConfig(target_names=('projection',)))
    ll.save(m, path)
    with safe_open(path, 'pt') as f: meta = f.metadata()
    cfg = json.loads(meta['lora_lite_config'])
    cfg['exclude_names'] = ['^(.|.)*Z']
    save_file(load_file(path), path, metadata={**meta, 'lora_lite_config': json.dumps(cfg)})
    t = time.perf_counter()
    ll.load(model(), path)
    print(time.perf_counter() - t)
''')

def test_11_crafted_regex_cannot_stall_load(tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    try: r = subprocess.run([sys.executable, '-c', HANG, str(tmp_path / 'a.st')], capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired: pytest.fail('ll.load ran the file\'s exclude_names regex: still running after 60 s')
    assert r.returncode == 0, r.stderr[-2000:]
    assert float(r.stdout.split()[-1]) < 1.0


# --- 12. a file's declared shapes are checked before anything is allocated -----------------------------------

def test_12_huge_declared_rank_refused_before_allocating(saved, tmp_path, monkeypatch):
    path, _ = saved
    with safe_open(str(path), 'pt') as f: d = json.loads(f.metadata()['lora_lite_config'])
    bad = craft(path, tmp_path / 'big.st', {'lora_lite_config': json.dumps({**d, 'r': 2 * 10**6, 'alpha': 16.0})})
    assert os.path.getsize(bad) < 64_000
    real_make = ParamSpec.make
    def make(spec, device, dtype):
        assert torch.Size(spec.shape).numel() < 10**6, f'allocating {spec.shape} before checking the file'
        return real_make(spec, device, dtype)
    monkeypatch.setattr(ParamSpec, 'make', make)
    m = tiny_model()
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r'does not fit this model.*file \(4, 16\) vs model \(2000000, 16\)'): ll.load(m, bad)
    assert time.perf_counter() - t < 1.0 and not ll.is_attached(m)


def test_12_rank_far_beyond_the_layer_refused_at_attach(monkeypatch):
    monkeypatch.setattr(ParamSpec, 'make', lambda *a: pytest.fail('allocated before the size check'))
    with pytest.raises(ValueError, match='r=1000000 is too large for'):
        ll.attach(tiny_model(), ll.LoraLiteConfig(r=10**6))


# --- save: atomic, permissions kept, symlinks kept ----------------------------------------------------------

def test_save_keeps_mode_and_symlink(tmp_path):
    m = attached()
    path = tmp_path / 'a.safetensors'
    old = os.umask(0o022)
    try: ll.save(m, path)
    finally: os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    os.chmod(path, 0o640)
    ll.save(m, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    (tmp_path / 'link.safetensors').symlink_to(path)
    perturb_(m, seed=5)
    ll.save(m, tmp_path / 'link.safetensors')
    assert (tmp_path / 'link.safetensors').is_symlink()
    fresh = tiny_model()
    ll.load(fresh, path)
    assert max_diff(out(fresh), out(m)) == 0


def test_interrupted_save_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    import safetensors.torch
    m = attached()
    path = ll.save(m, tmp_path / 'a.safetensors')
    before, listing = open(path, 'rb').read(), sorted(os.listdir(tmp_path))
    def broken(sd, p, metadata=None):
        with open(p, 'wb') as f: f.write(b'half a file')
        raise KeyboardInterrupt
    monkeypatch.setattr(safetensors.torch, 'save_file', broken)
    with pytest.raises(KeyboardInterrupt): ll.save(m, path)
    assert open(path, 'rb').read() == before and sorted(os.listdir(tmp_path)) == listing
