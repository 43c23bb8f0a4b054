"""Two CPU processes (torchrun, gloo) train the same adapter with DDP and FSDP2; both must match one process.

Runs `examples/train_distributed.py` once (on rank 0 alone: `single`, the whole batch, and `accum`, the
batch as two micro-batches with averaged gradients; then `ddp` and `fsdp2` on both ranks, each rank on
half of the same global batches) and checks its files here, independently of the script's own report:

- after N AdamW steps each engine's adapter equals the one-process adapters: the relative error of the
  update, ||θ_engine − θ_1proc|| / ||θ_1proc − θ_0||, is below 1e-4 vs `single` (float32; measured
  ~3e-6, batch-shape rounding) and below 1e-6 vs `accum` (measured 0: the same arithmetic);
- each saved file loads with plain `ll.load` into a fresh single-device model and reproduces the logits
  the wrapped (DDP) or sharded (FSDP2) model produced, to 1e-5 relative (measured: exactly);
- the comparison can fail: an adapter trained on one rank's half batch only (what a missing gradient
  all-reduce amounts to) is far outside the tolerance.
"""
import json, os, subprocess, sys
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file
import lora_lite as ll
from lora_lite.adapter import read_adapter
from lora_lite.testing import tiny_qwen3, outputs, task_loss

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'examples' / 'train_distributed.py'
STEPS, TOL = 4, 1e-4


def update_err(sd, ref, init):
    "||θ − θ_ref|| / ||θ_ref − θ_0|| over all tensors."
    flat = lambda d: torch.cat([d[k].float().flatten() for k in sorted(d)])
    a, r, i = flat(sd), flat(ref), flat(init)
    return ((a - r).norm() / (r - i).norm()).item()


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp('dist')
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(SCRIPT),
           '--out', str(out), '--steps', str(STEPS), '--impl', 'fast']   # the fast paths: 'auto' takes the references at this size
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    return out


def test_report(run):
    res = json.loads((run / 'distributed.json').read_text())
    assert res['world_size'] == 2 and res['backend'] == 'gloo'
    assert [r['engine'] for r in res['results']] == ['single', 'accum', 'ddp', 'fsdp2']
    assert all(r['ok'] for r in res['results']) and '| fsdp2 | 2 |' in (run / 'distributed.md').read_text()


@pytest.mark.parametrize('engine', ['ddp', 'fsdp2'])
def test_adapter_matches_one_process(run, engine):
    ref = read_adapter(run / 'adapter-single.safetensors')[2]
    init = load_file(run / 'init-single.safetensors')
    assert all(torch.equal(init[k], v) for k, v in load_file(run / f'init-{engine}.safetensors').items())
    sd = read_adapter(run / f'adapter-{engine}.safetensors')[2]
    assert sd.keys() == ref.keys() and len(sd) == 2 * 7 * 2  # lora_A, lora_B on 7 linears x 2 layers
    moved = max((ref[k] - init[k]).abs().max().item() for k in ref)
    assert moved > 1e-3, "training did not move the adapter: the comparison would measure nothing"
    err = update_err(sd, ref, init)
    assert err < TOL, f"{engine} adapter differs from one-process training: update error {err:.2e}"
    acc = read_adapter(run / 'adapter-accum.safetensors')[2]
    err = update_err(sd, acc, load_file(run / 'init-accum.safetensors'))
    assert err < 1e-6, f"{engine} adapter differs from one-process gradient accumulation: update error {err:.2e}"


@pytest.mark.parametrize('engine', ['single', 'accum', 'ddp', 'fsdp2'])
def test_saved_file_reloads_on_one_device(run, engine):
    lg = load_file(run / f'logits-{engine}.safetensors')
    m = tiny_qwen3(); ll.load(m, run / f'adapter-{engine}.safetensors')
    with torch.no_grad(): y = outputs(m, lg['ids'])
    d = (y - lg['logits']).abs().max() / lg['logits'].abs().max()
    assert d <= 1e-5, f"{engine}: logits after ll.load differ from the wrapped model's by {d:.2e}"
    with torch.no_grad(): base = outputs(tiny_qwen3(), lg['ids'])
    assert (base - lg['logits']).abs().max() > 1e-3  # the adapter changed the model


def test_comparison_can_fail(run):
    "One rank's half batch without gradient averaging: what attaching after DDP/FSDP2 silently gives."
    sys.path.insert(0, str(SCRIPT.parent))
    import train_distributed as td
    a = td.parse(['--out', str(run), '--steps', str(STEPS)])
    m = td.build(a)
    opt = torch.optim.AdamW(ll.trainable_parameters(m), lr=a.lr, weight_decay=0.0)
    m.train()
    for step in range(STEPS):
        loss = task_loss(m, td.batch(a, step, m.config.vocab_size).chunk(2)[0])
        opt.zero_grad(); loss.backward(); opt.step()
    ref = read_adapter(run / 'adapter-single.safetensors')[2]
    err = update_err(ll.adapter_state_dict(m), ref, load_file(run / 'init-single.safetensors'))
    assert err > 100 * TOL, err
    print(f"half batch, no averaging: update error {err:.2e}")


def test_delora_shards_with_fsdp2(tmp_path):
    "DeLoRA's strength is a shape-(1,) tensor, so FSDP2 shards it (it refuses 0-dim parameters): same arithmetic as one process."
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(SCRIPT),
           '--out', str(tmp_path), '--steps', '2', '--variant', 'delora', '--engines', 'single,accum,fsdp2', '--impl', 'fast']
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    res = {r['engine']: r for r in json.loads((tmp_path / 'distributed.json').read_text())['results']}
    assert set(res) == {'single', 'accum', 'fsdp2'} and all(r['ok'] for r in res.values())
    assert res['fsdp2']['err_vs_accum'] < 1e-6 and res['fsdp2']['reload_logit_diff'] <= 1e-5
    assert tuple(read_adapter(tmp_path / 'adapter-fsdp2.safetensors')[2]['model.layers.0.self_attn.q_proj.lora_lambda'].shape) == (1,)


# --- bench/fsdp_8b.py at the tiny shape: FSDP2 per block for LoRA, DoRA, PiSSA, OFT on a float and a 4-bit base ---
BENCH = ROOT / 'bench' / 'fsdp_8b.py'
FSDP_VARIANTS = ['lora', 'dora', 'pissa', 'oft']


@pytest.fixture(scope='module')
def fsdp_run(tmp_path_factory):
    "One launch: every (base, variant) trains on one process (micro-batch accumulation) and sharded on two."
    out = tmp_path_factory.mktemp('fsdp')
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(BENCH),
           '--device', 'cpu', '--shape', 'tiny', '--quant', 'none,nf4', '--variants', ','.join(FSDP_VARIANTS),
           '--steps', '2', '--batch', '4', '--seq', '16', '--adapter-rank', '4', '--impl', 'fast', '--out', str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    return out, {(r['base'], r['variant']): r for r in json.loads((out / 'fsdp.json').read_text())['rows']}


def test_fsdp_report(fsdp_run):
    out, rows = fsdp_run
    assert set(rows) == {(b, v) for b in ('float32', 'nf4') for v in FSDP_VARIANTS}
    assert rows[('nf4', 'pissa')]['status'] == 'refused' and 'PiSSA' in rows[('nf4', 'pissa')]['reason']
    ran = [r for r in rows.values() if r['status'] == 'ran']
    assert len(ran) == 7 and all(r['ok'] for r in ran) and '| nf4 | dora |' in (out / 'fsdp.md').read_text()


@pytest.mark.parametrize('base,variant', [(b, v) for b in ('float32', 'nf4') for v in FSDP_VARIANTS if (b, v) != ('nf4', 'pissa')])
def test_fsdp_equals_accumulation_and_reloads(fsdp_run, base, variant):
    """Checked here from the files, independently of the script: the sharded adapter equals one-process
    micro-batch accumulation (float32 and the NF4 base with float32 compute: measured exactly 0, tolerance 1e-6),
    and the file `save_distributed` wrote reloads into a fresh unsharded model with the sharded logits (1e-6)."""
    out, _ = fsdp_run
    tag = f"{'none' if base == 'float32' else base}-{variant}"
    one = read_adapter(out / f'{tag}-one.safetensors')[2]
    fs = read_adapter(out / f'{tag}-fsdp2.safetensors')[2]
    init = torch.load(out / f'{tag}-init.pt')
    assert fs.keys() == one.keys() == init.keys() and len({k.rsplit('.', 2)[-2] for k in fs}) == 7  # all 7 projections
    assert max((one[k] - init[k]).abs().max().item() for k in one) > 1e-4, "training did not move the adapter"
    err = update_err(fs, one, init)
    assert err < 1e-6, f"{base} {variant}: sharded adapter differs from one-process accumulation: {err:.2e}"
    sys.path.insert(0, str(BENCH.parent))
    import fsdp_8b
    a = fsdp_8b.parse(['--out', str(out), '--device', 'cpu', '--shape', 'tiny'])
    m = fsdp_8b.build_model('tiny', torch.float32, torch.device('cpu'))
    if base == 'nf4': fsdp_8b.quantize_(m, a, torch.device('cpu'))
    ll.load(m, out / f'{tag}-fsdp2.safetensors')
    lg = torch.load(out / f'{tag}-logits.pt')
    with torch.no_grad(): y = m.eval()(input_ids=lg['ids']).logits
    assert (y - lg['logits']).abs().max() <= 1e-6 * lg['logits'].abs().max()
    if base == 'nf4': assert type(m.model.layers[0].mlp.down_proj).__name__ == 'Linear4bit'
