"""examples/train_trainer.py on the tiny model: trains under transformers.Trainer, checkpoints hold only the adapter file,
a fresh run resumed from the middle checkpoint ends exactly like the uninterrupted one, and the final adapter loads with ll.load."""
import importlib.util, json, os, pathlib, subprocess, sys
import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / 'examples' / 'train_trainer.py'


def _example(tmp_path, variant, capsys):
    "Run the example on the tiny model: PiSSA as a script (a subprocess), LoRA in this process (no second import)."
    argv = ['--model', 'tiny-random', '--variant', variant, '--steps', '6', '--batch', '8', '--lr', '2e-2', '--check-resume',
            '--out', str(tmp_path / 'run')]
    if variant == 'pissa':
        r = subprocess.run([sys.executable, str(EXAMPLE), *argv], capture_output=True, text=True, timeout=600,
                           env={**os.environ, 'OMP_WAIT_POLICY': 'PASSIVE'})
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout
    spec = importlib.util.spec_from_file_location('train_trainer_example', EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    capsys.readouterr()
    assert mod.main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize('variant', ['lora', 'pissa'])
def test_trainer_example(tmp_path, variant, capsys):
    s = json.loads(_example(tmp_path, variant, capsys).strip().splitlines()[-1])
    assert len(s['losses']) == 6 and s['losses'][-1] < s['losses'][0], s['losses']
    assert s['checkpoint_files'] == ['adapter.safetensors', 'optimizer.pt', 'rng_state.pth', 'scheduler.pt',
                                     'trainer_state.json', 'training_args.bin']
    assert 'adapter.safetensors' in s['output_files'] and not any(f.startswith('model') for f in s['output_files'])
    assert s['resumed_losses'] == s['losses'] and s['resume_gap'] == 0, s
    assert s['reload_gap'] == 0


def test_checkpoint_adapter_is_lora_lite_format(tmp_path):
    "The checkpoint's file is an ll.save file: only lora_* tensors, config and targets; no base weight (PiSSA's residual)."
    import torch, lora_lite as ll
    from transformers import TrainingArguments
    from lora_lite.models import tiny_random
    from lora_lite.trainer import LoraLiteTrainer
    from lora_lite.adapter import read_adapter
    model, _ = tiny_random()
    ll.attach(model, ll.LoraLiteConfig(variant='pissa', r=4, target_names=('q_proj$',), layers=(0,)))
    data = [dict(input_ids=x, labels=x) for x in torch.randint(0, 256, (8, 16), generator=torch.Generator().manual_seed(0))]
    args = TrainingArguments(str(tmp_path), max_steps=2, per_device_train_batch_size=4, save_steps=2, report_to=[], use_cpu=True)
    LoraLiteTrainer(model=model, args=args, train_dataset=data).train()
    cfg, targets, sd = read_adapter(tmp_path / 'checkpoint-2' / 'adapter.safetensors')
    assert cfg.variant == 'pissa' and targets == ['model.layers.0.self_attn.q_proj']
    assert sd and all(k.rsplit('.', 1)[-1].startswith('lora_') for k in sd), list(sd)
    assert not list(tmp_path.glob('checkpoint-2/model*'))
