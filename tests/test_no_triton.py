"""Importing lora-lite, listing variants, an unknown name, attaching every variant and the probe work with Triton absent.

One subprocess (Triton hidden) does all three and reports what it saw as JSON; the tests below judge its parts. The probe
run is also CI's every-variant probe on the tiny model (it was a second, in-process run in test_probe.py before)."""
import json, subprocess, sys, textwrap
import pytest
from lora_lite.probe import discover_variants, COLUMNS

HIDE = "import sys\nsys.modules['triton'] = None   # as on a CPU or macOS torch install without Triton\n"
TINY = ['--model', 'tiny-random', '--steps', '5', '--lr', '3e-2', '--quiet']

SCRIPT = """
    import io, json, contextlib, torch
    import lora_lite as ll
    from lora_lite.variant import SHIPPED
    from lora_lite.testing import tiny_model, tiny_input, task_loss
    from lora_lite.probe import discover_variants
    from lora_lite.cli import main
    rep = {}
    names = sorted(ll.all_variants())
    assert set(SHIPPED) <= set(names), names
    try: ll.get_variant('triton_kernels')
    except ValueError as e: rep['refused'] = str(e)[:60]
    toy = {'fourierft': {'n_frequency': 64}, 'vblora': {'num_vectors': 32, 'vector_length': 8}}   # 16-wide layers
    trained = []
    for name, V in sorted(ll.all_variants().items()):
        if name.startswith('_'): continue
        for impl in ('auto', 'reference'):
            m = tiny_model()
            calib = [tiny_input(seed=s) for s in range(2)] if V.needs_calibration else None
            ll.attach(m, ll.LoraLiteConfig(variant=name, impl=impl, options=toy.get(name, {})), calibration_data=calib)
            task_loss(m, tiny_input()).backward()
            assert any(p.grad is not None for p in ll.trainable_parameters(m)), name
            trained.append([name, impl])
    rep['trained'] = trained
    rep['discovered'] = discover_variants()
    with contextlib.redirect_stdout(io.StringIO()) as f: rep['probe_rc'] = main(['probe', *TINY, '--out', OUT])
    rep['table'] = f.getvalue()
    rep['triton'] = repr(sys.modules['triton'])
    print(json.dumps(rep))
"""


@pytest.fixture(scope='module')
def hidden(tmp_path_factory):
    "Run SCRIPT with Triton hidden; `(report, probe output folder)`."
    out = tmp_path_factory.mktemp('probe')
    code = HIDE + f"TINY, OUT = {TINY!r}, {str(out)!r}\n" + textwrap.dedent(SCRIPT)
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1]), out


def test_registry_without_triton(hidden):
    rep, _ = hidden
    assert rep['refused'].startswith('unknown variant') and rep['triton'] == 'None'


def test_every_variant_attaches_and_trains_without_triton(hidden):
    rep, _ = hidden
    names, _ = discover_variants()
    assert sorted(rep['trained']) == sorted([n, impl] for n in names for impl in ('auto', 'reference'))


def test_probe_every_variant_without_triton(hidden):
    "`lora-lite probe` on the tiny model, every variant, Triton hidden: every row passes and the folder holds the run."
    rep, out = hidden
    assert rep['probe_rc'] == 0
    rows = {r['variant']: r for r in json.loads((out / 'probe.json').read_text())['rows']}
    names, broken = rep['discovered']
    assert not broken and 'lora' in names and list(rows) == names and names == discover_variants()[0]
    for r in rows.values():
        assert r['status'] == 'PASS', r
        assert r['targets'] == 2 and r['trainable'] > 0 and r['perturb'] > 0 and r['grad'] > 0 and r['dθ'] > 0
        assert r['lossN'] < r['loss0'] and r['reload'] == 0
        assert (out / f"{r['variant']}.safetensors").exists()
    assert rows['lora']['id_err'] == 0
    assert (out / 'probe_loss.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert '| ' + ' | '.join(COLUMNS) in rep['table'] and rep['table'].count('| PASS |') == len(names)
