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
           '--out', str(out), '--steps', str(STEPS)]
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
           '--out', str(tmp_path), '--steps', '2', '--variant', 'delora', '--engines', 'single,accum,fsdp2']
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    res = {r['engine']: r for r in json.loads((tmp_path / 'distributed.json').read_text())['results']}
    assert set(res) == {'single', 'accum', 'fsdp2'} and all(r['ok'] for r in res.values())
    assert res['fsdp2']['err_vs_accum'] < 1e-6 and res['fsdp2']['reload_logit_diff'] <= 1e-5
    assert tuple(read_adapter(tmp_path / 'adapter-fsdp2.safetensors')[2]['model.layers.0.self_attn.q_proj.lora_lambda'].shape) == (1,)
