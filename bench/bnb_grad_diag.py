"""Per-tensor gradient gaps of bf16-compute 4-bit cases: quantized vs exact twin, bf16 twin vs exact twin.
usage: python bench/bnb_grad_diag.py [cpu|cuda] [variant:kind:where,...]  (the CUDA diagnosis behind bench/results/bnb_cuda.md)"""
import sys, tempfile, warnings, logging
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings('ignore'); logging.getLogger('bitsandbytes').setLevel(logging.ERROR)
import torch, lora_lite as ll
from lora_lite.quant import quant_model, quant_inputs, dense_twin_, _grads
from lora_lite.testing import perturb_, task_loss
from lora_lite.variant import get_variant
dev = sys.argv[1] if len(sys.argv) > 1 else 'cuda'
cases = [c.split(':') for c in (sys.argv[2] if len(sys.argv) > 2 else 'eva:nf4-bf16:hf,vera:nf4-bf16:hf,svd_basis:nf4-bf16:hf,lora:nf4-bf16:hf,vera:fp4-bf16:hf').split(',')]
def maxrel(a, r): return ((a - r).abs().max() / r.abs().max().clamp_min(1e-12)).item()
def normrel(a, r): return ((a - r).norm() / r.norm().clamp_min(1e-12)).item()
for v, kind, where in cases:
    make = lambda: quant_model(kind, where, dev)
    inp, calib = quant_inputs(where, dev)
    cfg = ll.LoraLiteConfig(variant=v, r=4, alpha=8)
    cal = calib if get_variant(v).needs_calibration else None
    m = make(); ll.attach(m, cfg, cal); perturb_(m); m.train(); task_loss(m, inp).backward(); g = _grads(m)
    path = Path(tempfile.mkdtemp()) / 'a.safetensors'; ll.save(m, path)
    tw = dense_twin_(make()); ll.load(tw, path); tw.train(); task_loss(tw, inp).backward(); gt = _grads(tw)
    ex = dense_twin_(make(), exact=True); ll.load(ex, path); ex.train(); task_loss(ex, inp).backward(); ge = _grads(ex)
    rows = sorted(((maxrel(g[n], ge[n]), maxrel(gt[n], ge[n]), normrel(g[n], ge[n]), normrel(gt[n], ge[n]), n) for n in ge), reverse=True)
    print(f"## {v} {kind} {where}: worst 4 tensors by quantized max-rel; columns q-max, twin-max, q-norm, twin-norm")
    for r in rows[:4]: print(f"  {r[4]:<45} {r[0]:.2e} {r[1]:.2e} {r[2]:.2e} {r[3]:.2e}")
    print(f"  max over tensors: q-norm {max(r[2] for r in rows):.2e}  twin-norm {max(r[3] for r in rows):.2e}")
