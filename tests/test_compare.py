"""`lora-lite compare` on the tiny model: budget matching for every shipped variant, the tasks' determinism and OOD
split, scoring, the confidence intervals against a hand example, bad data files, exit codes (resuming: nbs/34_compare.ipynb)."""
import json, math, random
import pytest
import torch
import lora_lite.compare as C
from lora_lite.models import tiny_random, ByteTokenizer
from lora_lite.variant import SHIPPED, get_variant

QV = ('q_proj$', 'v_proj$')


@pytest.fixture(scope='module')
def tiny(): return tiny_random()[0]


@pytest.mark.parametrize('name', sorted(SHIPPED))
def test_budget_every_variant(tiny, name):
    "The count is what attach gives, within ±10% or explained, and no allowed size comes nearer (or the variant is refused)."
    for budget in (700, 3000):
        try: m = C.match_budget(tiny, name, budget, QV)
        except C.CompareError as e:
            assert name == 'vblora' and 'fits these targets' in str(e)
            return
        assert C.trainable_count(tiny, C.knob_config(name, m.value, QV), C._calib_ids(tiny)) == m.count
        assert m.ok or m.note, m
        groups = C.shape_groups(tiny, QV)
        values = range(1, max(700, 2 * m.value + 64)) if m.knob in ('r', 'fixed', 'n_frequency') else C.knob_values(name, groups)
        allowed = [c for c in (C.size_count(name, v, groups, QV) for v in values) if c is not None]
        if 'shared' not in m.note: assert min(abs(c - budget) for c in allowed) == abs(m.count - budget)


def test_budget_knobs(tiny):
    assert C.match_budget(tiny, 'lora', 448 * 5, QV).value == 5
    assert C.match_budget(tiny, 'hra', 128 * 3 * 2, QV).value % 2 == 0
    ia3 = C.match_budget(tiny, 'ia3', 10_000, QV)
    assert ia3.knob == 'fixed' and not ia3.ok and 'cannot be reached' in ia3.note


@pytest.mark.parametrize('task', sorted(C.TASKS))
def test_tasks_deterministic_and_ood(task):
    d1, d2, d3 = C.task_data(task, 16, 32, seed=5), C.task_data(task, 16, 32, seed=5), C.task_data(task, 16, 32, seed=6)
    assert (d1.val, d1.test, d1.ood) == (d2.val, d2.test, d2.ood) and d1.ood != d3.ood
    train = [e for _, e in zip(range(500), d1.train(0))]
    assert train == [e for _, e in zip(range(500), d2.train(0))] != [e for _, e in zip(range(500), d1.train(1))]
    t = C.TASKS[task]
    size = lambda es: {C.example_size(task, e) for e in es}
    assert max(size(train) | size(d1.val) | size(d1.test)) <= t.train[1] < t.ood[0] <= min(size(d1.ood))
    held = [e['prompt'] for e in d1.val + d1.test + d1.ood]
    assert len(set(held)) == len(held) and not set(held) & {e['prompt'] for e in train}


def test_task_answers():
    rng = random.Random(0)
    for _ in range(200):
        p, c = C.addition(rng, rng.randint(1, 5))
        assert eval(p.rstrip('=')) == int(c)
        p, c = C.reversal(rng, 6)
        assert p.split()[1:-1][::-1] == c.split()


def test_scoring():
    assert C.exact_match(' 465\nmore', '465') and not C.exact_match('465 b', '465') and not C.exact_match('4650', '465')
    tok, d = ByteTokenizer(), C.task_data('add', 4, 8)
    answers = {e['prompt']: e['completion'] if i % 4 else 'x' for i, e in enumerate(d.test)}

    class Oracle(torch.nn.Module):
        def __init__(self): super().__init__(); self.w = torch.nn.Parameter(torch.zeros(1))
        def generate(self, input_ids, attention_mask, generation_config):
            rows = [list(answers[tok.decode(r[m.bool()].tolist())].encode()) + [10] for r, m in zip(input_ids, attention_mask)]
            n = max(map(len, rows))
            return torch.cat([input_ids, torch.tensor([r + [0] * (n - len(r)) for r in rows])], 1)
    assert C.accuracy(Oracle(), tok, d.test)['acc'] == 0.75


def test_confidence_intervals():
    assert C.t_quantile(0.975, 2) == pytest.approx(4.303, abs=1e-3)
    m, h = C.mean_ci([0.5, 0.6, 0.7])
    assert (m, h) == pytest.approx((0.6, 4.3027 * 0.1 / math.sqrt(3)), abs=1e-4)
    dm, dh = C.paired_ci([0.5, 0.6, 0.7], [0.45, 0.5, 0.65])
    assert (dm, dh) == pytest.approx((0.0666667, 4.3027 * 0.0288675 / math.sqrt(3)), abs=1e-4)
    assert C.mean_ci([0.25]) == (0.25, None)


# Resume after an interruption (same table, only the missing runs trained, nothing on a third call, a changed setting
# retrains and compare.json holds it): nbs/34_compare.ipynb, section Resuming.


@pytest.mark.parametrize('text,msg', [
    ('{"prompt": "a", "answer": "b"}', "missing key 'completion'"),
    ('', 'is empty'),
    ('prompt,completion\na,b', 'line 1: not JSON'),
    ('{"prompt": "a", "completion": 4}', "'completion' must be a string"),
    ('{"prompt": ["a"], "completion": "b"}', "'prompt' must be a string"),
    ('"just a string"', 'a JSON str'),
    ('{"prompt": "a", "completion": "b\\nc"}', 'holds a newline'),
])
def test_bad_data_files(tmp_path, text, msg):
    bad, good = tmp_path / 'bad.jsonl', tmp_path / 'good.jsonl'
    bad.write_text(text)
    good.write_text('\n'.join(json.dumps(dict(prompt=f'{i}+1=', completion=str(i + 1))) for i in range(10)))
    with pytest.raises(C.CompareError, match=msg): C.read_pairs(bad)
    with pytest.raises(C.CompareError, match=msg): C.file_data(good, bad)
    assert C.compare_main(['--model', 'tiny-random', '--train', str(good), '--eval', str(bad), '--quiet']) == 2


def test_user_data_runs(tmp_path, capsys):
    tr, ev = tmp_path / 'tr.jsonl', tmp_path / 'ev.jsonl'
    tr.write_text('\n'.join(json.dumps(dict(prompt=f'{i}+1=', completion=str(i + 1))) for i in range(40)))
    ev.write_text('\n'.join(json.dumps(dict(prompt=f'{i}+2=', completion=str(i + 2))) for i in range(5)))
    argv = ['--model', 'tiny-random', '--train', str(tr), '--eval', str(ev), '--variants', 'lora', '--lrs', '0.01',
            '--seeds', '1', '--steps', '2', '--batch', '2', '--out', str(tmp_path / 'o'), '--quiet']
    assert C.compare_main(argv) == 0
    out = capsys.readouterr().out
    assert '| lora | r=' in out and 'OOD acc %' in out
    assert json.loads((tmp_path / 'o' / 'compare.json').read_text())['settings']['n_ood'] == 0


def test_input_errors(capsys):
    base = ['--model', 'tiny-random', '--quiet']
    for extra in (['--variants', 'lorra'], ['--budget', '0'], ['--lrs', 'nan'], ['--eval', 'x.jsonl'], ['--ood', 'x.jsonl'],
                  ['--targets', 'query$'], ['--device', 'gpu']):
        assert C.compare_main(base + extra) == 2, extra
        assert 'lora-lite compare: error' in capsys.readouterr().err
