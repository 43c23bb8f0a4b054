"The library as a user script imports it: public names, variant classes, a full train/save/load cycle."
import torch, pytest
import lora_lite as ll
from lora_lite.lora import LoRA
from lora_lite.testing import tiny_llama, token_input, max_diff


def test_public_api():
    for n in ["LoraLiteConfig", "attach", "detach", "save", "load", "summary", "find_targets", "Variant", "ParamSpec"]:
        assert hasattr(ll, n), n
    assert ll.get_variant("lora") is LoRA and LoRA.name == "lora"


def test_cycle_on_llama(tmp_path):
    ids = token_input()
    m = tiny_llama()
    with torch.no_grad(): base = m(ids).logits
    cfg = ll.LoraLiteConfig(variant=LoRA, r=4, alpha=8, target_names=(r"q_proj", r"v_proj"))
    targets = ll.attach(m, cfg)
    assert len(targets) == 4
    opt = torch.optim.AdamW(ll.trainable_parameters(m), lr=5e-2)
    for _ in range(5):
        loss = m(ids, labels=ids).loss
        opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad(): tuned = m(ids).logits
    assert max_diff(tuned, base) > 0
    path = ll.save(m, tmp_path / "a.safetensors")
    ll.detach(m)
    with torch.no_grad(): assert max_diff(m(ids).logits, base) == 0
    m2 = tiny_llama(); ll.load(m2, path)
    with torch.no_grad(): assert max_diff(m2(ids).logits, tuned) == 0


def test_bad_inputs_raise():
    m = tiny_llama()
    with pytest.raises(ValueError, match="no module matches"):
        ll.attach(m, ll.LoraLiteConfig(target_names=("qproj",)))
    with pytest.raises(RuntimeError, match="no lora-lite adapter"):
        ll.save(m, "/tmp/x.safetensors")
    assert not ll.is_attached(m)
