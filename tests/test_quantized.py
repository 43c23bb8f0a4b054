"The CUDA check script runs (here on CPU, on a small subset) and a user's QLoRA-style cycle works on a 4-bit base."
import subprocess, sys
from pathlib import Path
import pytest, torch

pytest.importorskip("bitsandbytes")
import lora_lite as ll
from lora_lite.quant import load_quantized, save_pretrained_tmp, check_not_repacked, is_bnb
from lora_lite.testing import tiny_qwen3, token_input, max_diff

ROOT = Path(__file__).resolve().parents[1]


def test_bnb_check_script_on_cpu():
    r = subprocess.run([sys.executable, "bench/bnb_cuda_check.py", "--device", "cpu", "--variants", "lora,pissa",
                        "--kinds", "nf4,int8", "--where", "layers"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "4/4 cases passed" in r.stdout and "| lora | nf4 | layers | ok |" in r.stdout and "refused at attach" in r.stdout


def test_qlora_cycle(tmp_path):
    folder = save_pretrained_tmp(tiny_qwen3())
    ids = token_input()
    m = load_quantized(folder, "nf4", guard=False)
    assert all(type(l).__name__ == "Linear4bit" for n, l in m.named_modules() if n.endswith("_proj"))
    ll.attach(m, ll.LoraLiteConfig(r=4, alpha=8, target_names=("q_proj", "v_proj"), impl="fast"))
    opt = torch.optim.AdamW(ll.trainable_parameters(m), lr=5e-2)
    losses = []
    for step in range(6):
        m.train(); loss = m(ids, labels=ids).loss
        opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item())
        m.eval()
        with torch.no_grad(): m(ids)  # an evaluation between steps must not break the next backward
    assert losses[-1] < losses[0]
    check_not_repacked(m)
    with torch.no_grad(): tuned = m(ids).logits
    path = ll.save(m, tmp_path / "q.safetensors")
    m2 = load_quantized(folder, "nf4"); ll.load(m2, path)
    with torch.no_grad(): assert max_diff(m2(ids).logits, tuned) == 0
