"tools/test_flags.py: lists, per notebook, the cells nbdev_test skips (settings.ini's tst_flags)."
import importlib.util, json, pathlib, subprocess, sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('test_flags_tool', ROOT / 'tools' / 'test_flags.py')
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)


def _nb(path, sources):
    cells = [dict(cell_type='code', source=s, metadata={}, outputs=[], execution_count=None) for s in sources]
    path.write_text(json.dumps(dict(cells=cells, metadata={}, nbformat=4, nbformat_minor=5)))


def test_flagged_cells_counted(tmp_path):
    (tmp_path / 'settings.ini').write_text('[DEFAULT]\ntst_flags = notest slow cuda\n')
    (tmp_path / 'nbs').mkdir()
    _nb(tmp_path / 'nbs' / '01_a.ipynb', ['#| cuda\nx = 1', '#| slow\ny = 2', '#|slow\nz = 3', 'print("#| cuda in a string")'])
    _nb(tmp_path / 'nbs' / '02_b.ipynb', ['#| export\ndef f(): pass'])
    out = tool.report(tmp_path)
    assert 'nbs/01_a.ipynb: 1 cuda, 2 slow' in out and '02_b' not in out and 'in all: 1 cuda, 2 slow' in out


def test_runs_on_the_repo():
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'test_flags.py')], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith('nbdev_test skips the cells flagged notest, slow, cuda'), r.stdout
