"Importing lora-lite, listing variants, an unknown name, attaching every variant and the probe work with Triton absent."
import subprocess, sys, textwrap, tempfile

HIDE = "import sys\nsys.modules['triton'] = None   # as on a CPU or macOS torch install without Triton\n"

def run_hidden(code: str, timeout=600) -> str:
    r = subprocess.run([sys.executable, '-c', HIDE + textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout

def test_registry_without_triton():
    out = run_hidden("""
        import lora_lite as ll
        from lora_lite.variant import SHIPPED
        names = sorted(ll.all_variants())
        assert set(SHIPPED) <= set(names), names
        try: ll.get_variant('triton_kernels')
        except ValueError as e: print('refused:', str(e)[:60])
        assert sys.modules['triton'] is None
        print(names)
    """)
    assert 'refused: unknown variant' in out

def test_every_variant_attaches_and_trains_without_triton():
    run_hidden("""
        import torch, lora_lite as ll
        from lora_lite.testing import tiny_model, tiny_input, task_loss
        toy = {'fourierft': {'n_frequency': 64}, 'vblora': {'num_vectors': 32, 'vector_length': 8}}   # 16-wide layers
        for name, V in sorted(ll.all_variants().items()):
            if name.startswith('_'): continue
            for impl in ('auto', 'reference'):
                m = tiny_model()
                calib = [tiny_input(seed=s) for s in range(2)] if V.needs_calibration else None
                ll.attach(m, ll.LoraLiteConfig(variant=name, impl=impl, options=toy.get(name, {})), calibration_data=calib)
                task_loss(m, tiny_input()).backward()
                assert any(p.grad is not None for p in ll.trainable_parameters(m)), name
        assert sys.modules['triton'] is None
    """)

def test_probe_without_triton():
    out = tempfile.mkdtemp()
    run_hidden(f"""
        from lora_lite.probe import probe_main
        rc = probe_main(['--model', 'tiny-random', '--steps', '2', '--out', {out!r}])
        assert rc == 0, rc
        assert sys.modules['triton'] is None
    """)
