"`lora-lite probe`: every variant on the tiny model, the exit codes (1 a variant failed, 2 an input it cannot use, 130 interrupted), the output folder, the entry points, and LoRA on real SmolLM2 weights."
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import torch
import pytest
import lora_lite as ll
from lora_lite.variant import Variant, ParamSpec
from lora_lite.probe import probe_main
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


# Every variant on the tiny model: tests/test_no_triton.py (the same `lora-lite probe` run, with Triton hidden).


def test_failing_checks_exit_nonzero(tmp_path):
    assert probe_main([*TINY, '--variants', 'lora', '_test_probe_dead', '_test_probe_refuses', '--out', str(tmp_path)]) == 1
    rows = _rows(tmp_path)
    assert rows['lora']['status'] == 'PASS'
    dead, refuses = rows['_test_probe_dead'], rows['_test_probe_refuses']
    assert dead['status'] == 'FAIL' and 'is the hook firing' in dead['error'] and 'loss did not drop' in dead['error']
    assert dead['id_err'] == 0 and dead['perturb'] == 0
    assert refuses['status'] == 'FAIL' and 'refuses every layer' in refuses['error'] and refuses['id_err'] is None
    assert '| — |' in (tmp_path / 'probe.md').read_text()


def _input_error(args, capsys):
    "Exit code 2, one line on stderr, nothing on stdout (no table)."
    capsys.readouterr()
    assert probe_main([*TINY, *args]) == 2
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and cap.out == '', (cap.out, cap.err)
    return lines[0]


def test_unknown_variant_is_a_usage_error(tmp_path, capsys):
    err = _input_error(['--variants', 'lora', 'no_such_variant', '--out', str(tmp_path / 'o')], capsys)
    assert 'no_such_variant' in err and 'Known variants: ' in err and not (tmp_path / 'o').exists()


def test_targets_matching_nothing(tmp_path, capsys):
    err = _input_error(['--targets', 'q_proj$', 'query$', '--out', str(tmp_path / 'o')], capsys)
    assert "'query$' matches no linear layer" in err and 'self_attn.q_proj' in err and not (tmp_path / 'o').exists()


def test_alpha_zero_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e: probe_main([*TINY, '--alpha', '0', '--out', str(tmp_path)])
    assert e.value.code == 2 and '--alpha must be a positive' in capsys.readouterr().err


def test_alpha_is_honoured(tmp_path):
    assert probe_main([*TINY, '--variants', 'lora', '--steps', '2', '--alpha', '4', '--out', str(tmp_path / 'o')]) == 0
    assert json.loads((tmp_path / 'o' / 'probe.json').read_text())['settings']['alpha'] == 4


def _with_tokenizer(model, path):
    "Save `model` with SmolLM2's tokenizer (vocabulary 49152), as a real checkpoint folder would be."
    import transformers
    from lora_lite.models import smollm2_folder
    model.save_pretrained(path)
    transformers.AutoTokenizer.from_pretrained(smollm2_folder()).save_pretrained(path)
    return str(path)


def _bert(head):
    import transformers
    cfg = transformers.BertConfig(vocab_size=49152, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    return (transformers.BertForMaskedLM if head else transformers.BertModel)(cfg)


def test_models_it_cannot_judge(tmp_path, capsys):
    "A BERT without a head (head initialised at load), a BERT with an MLM head (not causal), a random Qwen3 folder (loss not below uniform)."
    from lora_lite.testing import tiny_qwen3
    cases = {'initialised': _with_tokenizer(_bert(False), tmp_path / 'bert'),
             'not causal': _with_tokenizer(_bert(True), tmp_path / 'mlm'),
             'not below the uniform guess': _with_tokenizer(tiny_qwen3(seed=0, vocab_size=49152), tmp_path / 'random')}
    for why, folder in cases.items():
        err = _input_error(['--model', folder, '--targets', 'query$|q_proj$', '--out', str(tmp_path / 'o')], capsys)
        assert 'cannot be judged' in err and why in err, err
        assert not (tmp_path / 'o').exists()


def test_out_holds_one_run(tmp_path):
    "A second run replaces the folder whole; a folder with other files is refused; no staging folder is left."
    out = tmp_path / 'probe_out'
    assert probe_main([*TINY, '--variants', 'lora', 'dora', '--steps', '2', '--out', str(out)]) == 0
    assert probe_main([*TINY, '--variants', 'ia3', '--steps', '2', '--out', str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ['ia3.safetensors', 'probe.json', 'probe.md', 'probe_loss.png']
    assert list(_rows(out)) == ['ia3'] and sorted(p.name for p in tmp_path.iterdir()) == ['probe_out']
    (out / 'notes.txt').write_text('mine')
    assert probe_main([*TINY, '--variants', 'lora', '--out', str(out)]) == 2
    assert (out / 'notes.txt').exists() and (out / 'ia3.safetensors').exists()


def test_ctrl_c_leaves_the_previous_run(tmp_path):
    """SIGINT while the second run trains, and a second one while it cleans up: exit 130, the folder still holds the
    first run exactly, no staging folder left. (Without `ignore_second_interrupt` the second SIGINT kills the process
    during Python's exit: return code -2.) The second run is `python -m lora_lite.probe` with OMP_WAIT_POLICY unset:
    it re-executes itself with PASSIVE."""
    out = tmp_path / 'probe_out'
    assert probe_main([*TINY, '--variants', 'ia3', '--steps', '2', '--out', str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    cmd = [sys.executable, '-m', 'lora_lite.probe', *TINY, '--variants', 'lora', 'dora', 'vera', '--steps', '100000',
           '--out', str(out)]
    env = {k: v for k, v in os.environ.items() if k != 'OMP_WAIT_POLICY'}
    # SIGINT's default disposition in the child, whatever the test runner inherited (a shell's background job ignores it)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.time()
    while not list(tmp_path.glob('.probe_out.partial-*')) and time.time() - t0 < 120: time.sleep(0.2)
    environ = Path(f'/proc/{proc.pid}/environ')
    policy = [e for e in environ.read_bytes().split(b'\0') if e.startswith(b'OMP_WAIT_POLICY=')] if environ.exists() else None
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)   # the first SIGINT is handled by now; the process is printing or cleaning up at exit
    if proc.poll() is None: proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert 'left as it was' in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['probe_out']
    assert policy in (None, [b'OMP_WAIT_POLICY=PASSIVE']), policy   # None: no /proc to read (not Linux)


def test_folder_without_tokenizer(tmp_path, capsys):
    "transformers builds an empty tokenizer for a folder without tokenizer files: refused, not probed on nothing."
    from lora_lite.testing import tiny_qwen3
    tiny_qwen3(seed=0).save_pretrained(tmp_path / 'm')
    assert 'distinct tokens' in _input_error(['--model', str(tmp_path / 'm'), '--out', str(tmp_path / 'o')], capsys)


def test_bad_out_device_config(tmp_path, capsys):
    "Each a clear line and exit 2 (not 1, the code of a failed variant)."
    a_file, bad = tmp_path / 'a_file', tmp_path / 'bad'
    a_file.write_text('x')
    bad.mkdir()
    (bad / 'config.json').write_text('[1, 2')
    assert 'is a file' in _input_error(['--out', str(a_file)], capsys)
    assert 'cannot write there' in _input_error(['--out', str(a_file / 'sub')], capsys)
    assert 'config.json' in _input_error(['--model', str(bad), '--out', str(tmp_path / 'o')], capsys)
    if not torch.cuda.is_available():
        assert 'no CUDA GPU' in _input_error(['--device', 'cuda', '--out', str(tmp_path / 'o')], capsys)


def test_console_script_help_imports_no_variant():
    "`lora-lite probe --help` (the installed script) lists options and variants without importing a variant module nor Triton."
    exe = shutil.which('lora-lite')
    assert exe, "the lora-lite console script is not installed: pip install -e ."
    r = subprocess.run([exe, 'probe', '--help'], capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'PYTHONPROFILEIMPORTTIME': '1'})
    assert r.returncode == 0 and '--load-in-4bit' in r.stdout and '--variants' in r.stdout
    assert all(n in r.stdout for n in ('lora', 'dora', 'pissa', 'svd_basis', 'eva')), r.stdout
    imported = {line.rsplit('|', 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith('import time:')}
    assert 'lora_lite.cli' in imported and 'torch' in imported, sorted(imported)[:20]   # the import log is read
    heavy = {'triton', 'lora_lite.dora', 'lora_lite.kernels'}
    assert not imported & heavy, imported & heavy


def test_console_script_sets_passive_threads(tmp_path):
    "The installed script, OMP_WAIT_POLICY unset: it re-executes itself with PASSIVE and the probe runs (one subprocess)."
    env = {k: v for k, v in os.environ.items() if k != 'OMP_WAIT_POLICY'}
    argv = ['probe', *TINY, '--variants', 'ia3', '--steps', '1', '--out', str(tmp_path / 'o')]
    r = subprocess.run([shutil.which('lora-lite'), *argv], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert '| ia3 | 2 |' in r.stdout and 'PASS' in r.stdout
    assert json.loads((tmp_path / 'o' / 'probe.json').read_text())['settings']['omp_wait_policy'] == 'PASSIVE'


class _Exec(Exception): pass


def test_main_reexecs_or_keeps_the_users_policy(tmp_path, monkeypatch):
    """The script's `main()` (no argv: it reads sys.argv): unset, it re-executes `python -m lora_lite.cli` with the same
    arguments and PASSIVE; set by the user (ACTIVE), it runs as it is and the probe records ACTIVE. In process, exec caught."""
    def execv(path, args): raise _Exec(path, args)
    monkeypatch.setattr(os, 'execv', execv)
    argv = ['probe', *TINY, '--variants', 'ia3', '--steps', '1', '--out', str(tmp_path / 'o')]
    monkeypatch.setattr(sys, 'argv', ['lora-lite', *argv])
    monkeypatch.delenv('OMP_WAIT_POLICY', raising=False)
    with pytest.raises(_Exec) as e: main()
    assert e.value.args == (sys.executable, [sys.executable, '-m', 'lora_lite.cli', *argv])
    assert os.environ['OMP_WAIT_POLICY'] == 'PASSIVE' and not (tmp_path / 'o').exists()
    monkeypatch.setenv('OMP_WAIT_POLICY', 'ACTIVE')
    assert main() == 0
    assert json.loads((tmp_path / 'o' / 'probe.json').read_text())['settings']['omp_wait_policy'] == 'ACTIVE'


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
