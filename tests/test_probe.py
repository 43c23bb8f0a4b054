"`lora-lite probe`: every variant on the tiny model, the failure exit code, the module and console entry points, and LoRA on real SmolLM2 weights."
import json, shutil, subprocess, sys
import pytest
import lora_lite as ll
from lora_lite.variant import Variant, ParamSpec
from lora_lite.probe import probe_main, discover_variants, COLUMNS
from lora_lite.cli import main

TINY = ['--model', 'tiny-random', '--steps', '5', '--lr', '3e-2', '--quiet']


class _TestDead(Variant):
    "A hook that ignores its parameter: the probe must mark it FAIL."
    name = '_test_probe_dead'
    @staticmethod
    def param_specs(d_in, d_out, cfg): return {'lora_s': ParamSpec((d_out,), 'ones')}
    @staticmethod
    def forward(layer, x, y): return y


class _TestRefuses(_TestDead):
    "Raises at attach (like HRA with an odd rank): a FAIL row, and the probe goes on."
    name = '_test_probe_refuses'
    @staticmethod
    def check(layer, cfg): raise ValueError("this variant refuses every layer")


def _rows(out): return {r['variant']: r for r in json.loads((out / 'probe.json').read_text())['rows']}


def test_tiny_every_variant(tmp_path, capsys):
    assert main(['probe', *TINY, '--out', str(tmp_path)]) == 0
    rows = _rows(tmp_path)
    names, broken = discover_variants()
    assert not broken and 'lora' in names and list(rows) == names
    for r in rows.values():
        assert r['status'] == 'PASS', r
        assert r['targets'] == 2 and r['trainable'] > 0 and r['perturb'] > 0 and r['grad'] > 0 and r['dθ'] > 0
        assert r['lossN'] < r['loss0'] and r['reload'] == 0
        assert (tmp_path / f"{r['variant']}.safetensors").exists()
    assert rows['lora']['id_err'] == 0
    assert (tmp_path / 'probe_loss.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    table = capsys.readouterr().out
    assert '| ' + ' | '.join(COLUMNS) in table and table.count('| PASS |') == len(names)


def test_failing_checks_exit_nonzero(tmp_path):
    assert probe_main([*TINY, '--variants', 'lora', '_test_probe_dead', '_test_probe_refuses', '--out', str(tmp_path)]) == 1
    rows = _rows(tmp_path)
    assert rows['lora']['status'] == 'PASS'
    dead, refuses = rows['_test_probe_dead'], rows['_test_probe_refuses']
    assert dead['status'] == 'FAIL' and 'is the hook firing' in dead['error'] and 'loss did not drop' in dead['error']
    assert dead['id_err'] == 0 and dead['perturb'] == 0
    assert refuses['status'] == 'FAIL' and 'refuses every layer' in refuses['error'] and refuses['id_err'] is None
    assert '| — |' in (tmp_path / 'probe.md').read_text()


def test_unknown_variant_is_a_fail_row(tmp_path):
    assert probe_main([*TINY, '--variants', 'no_such_variant', '--out', str(tmp_path)]) == 1
    assert 'registered variants' in _rows(tmp_path)['no_such_variant']['error']


def test_python_dash_m(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'lora_lite.probe', *TINY, '--variants', 'lora', '--steps', '2', '--out', str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert '| lora | 2 |' in r.stdout and 'PASS' in r.stdout


def test_console_script_help():
    exe = shutil.which('lora-lite')
    assert exe, "the lora-lite console script is not installed: pip install -e ."
    r = subprocess.run([exe, 'probe', '--help'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and '--load-in-4bit' in r.stdout and '--variants' in r.stdout


def test_smollm2_lora(tmp_path):
    "The real-weights check CI runs: LoRA on SmolLM2-135M (converted once per machine into the cache)."
    assert probe_main(['--variants', 'lora', '--steps', '3', '--out', str(tmp_path), '--quiet']) == 0
    r = _rows(tmp_path)['lora']
    assert (r['targets'], r['trainable'], r['id_err'], r['reload']) == (2, 2 * 8 * 576 + 8 * 576 + 8 * 192, 0, 0)
    assert r['perturb'] > 0 and r['lossN'] < r['loss0'] < 10


def test_tiny_4bit(tmp_path):
    "A bitsandbytes 4-bit base: LoRA passes with an exact identity; PiSSA refuses quantized weights by design and is a SKIP, not a FAIL."
    assert probe_main([*TINY, '--load-in-4bit', '--variants', 'lora', 'pissa', '--out', str(tmp_path)]) == 0
    rows = _rows(tmp_path)
    assert rows['lora']['status'] == 'PASS' and rows['lora']['id_err'] == 0 and rows['lora']['reload'] == 0
    assert rows['pissa']['status'] == 'SKIP' and 'quantized' in rows['pissa']['error']
