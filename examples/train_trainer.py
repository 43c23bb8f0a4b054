"""Fine-tune a lora-lite adapter with transformers.Trainer; every checkpoint holds the adapter as an `ll.save` file.

    python examples/train_trainer.py --variant dora --out results/trainer          # SmolLM2-135M on CPU: a few minutes
    python examples/train_trainer.py --model tiny-random --check-resume --out /tmp/t  # config-built tiny Qwen3: seconds

With --check-resume the script also starts a fresh model and Trainer from the middle checkpoint and checks that
the resumed run ends with exactly the same losses and adapter as the uninterrupted one. It ends by loading the
final adapter into a fresh model with `ll.load` and comparing logits, then prints a JSON summary as its last line.
"""
import argparse, json, os
from pathlib import Path
import torch
from transformers import TrainingArguments
import lora_lite as ll
from lora_lite.models import smollm2, tiny_random, corpus_text
from lora_lite.trainer import LoraLiteTrainer, ADAPTER_FILE


def load(name):
    "(model, tokenizer) for 'smollm2' or 'tiny-random'."
    return smollm2() if name == 'smollm2' else tiny_random()


def dataset(tok, seq_len=32, n=64):
    "The built-in corpus in `seq_len`-token sequences, labels = inputs (the model shifts them)."
    ids = torch.tensor(tok.encode(corpus_text(), add_special_tokens=False))
    seqs = ids[:len(ids) // seq_len * seq_len].view(-1, seq_len)[:n]
    return [dict(input_ids=s, labels=s) for s in seqs]


def attached(a, seed):
    "A fresh base model with the adapter attached; the same seed gives the same initial adapter."
    model, tok = load(a.model)
    torch.manual_seed(seed)
    cfg = ll.LoraLiteConfig(variant=ll.get_variant(a.variant), r=a.r, alpha=2 * a.r, target_names=(r'q_proj$', r'v_proj$'))
    ll.attach(model, cfg)
    return model, tok


def trainer(a, model, tok, out):
    args = TrainingArguments(out, max_steps=a.steps, per_device_train_batch_size=a.batch, learning_rate=a.lr,
                             save_steps=max(1, a.steps // 2), logging_steps=1, report_to=[], use_cpu=a.device == 'cpu',
                             seed=0, disable_tqdm=True)
    return LoraLiteTrainer(model=model, args=args, train_dataset=dataset(tok))


def losses(t): return [h['loss'] for h in t.state.log_history if 'loss' in h]


def max_gap(a, b): return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='smollm2', choices=('smollm2', 'tiny-random'))
    p.add_argument('--variant', default='dora', help='a registered variant name (default: dora)')
    p.add_argument('--r', type=int, default=8)
    p.add_argument('--steps', type=int, default=20)
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', default='results/trainer')
    p.add_argument('--check-resume', action='store_true', help='resume a fresh run from the middle checkpoint and compare')
    a = p.parse_args(argv)
    out = Path(a.out)
    model, tok = attached(a, seed=0)
    t = trainer(a, model, tok, out)
    t.train()
    t.save_model()                               # writes out/adapter.safetensors (the adapter only)
    summary = dict(variant=a.variant, model=a.model, losses=losses(t), output_files=sorted(os.listdir(out)))
    middle = out / f'checkpoint-{max(1, a.steps // 2)}'
    summary['checkpoint_files'] = sorted(os.listdir(middle))
    if a.check_resume:
        model2, tok2 = attached(a, seed=1)      # another initial adapter: only the checkpoint can make it equal
        t2 = trainer(a, model2, tok2, out / 'resumed')
        t2.train(resume_from_checkpoint=str(middle))
        summary['resumed_losses'] = losses(t2)
        summary['resume_gap'] = max_gap(ll.adapter_state_dict(model), ll.adapter_state_dict(model2))
    fresh, _ = load(a.model)
    ll.load(fresh, out / ADAPTER_FILE)
    x = dataset(tok)[0]['input_ids'][None]
    with torch.no_grad(): summary['reload_gap'] = (fresh(x).logits - model(x).logits).abs().max().item()
    print(json.dumps(summary))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
