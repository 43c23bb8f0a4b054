"""Rebuild a `lora-lite compare` report from stored run records, e.g. the `runs.json.gz` files that
`bench/compare_gpu.sh run` brings back from a device (several calls merge by each run's key).

    python bench/compare_report.py OUT_DIR RUNS.json.gz [RUNS2.json.gz ...] --lrs 0.001 0.003 0.01 0.03 --seeds 3

A run that is not among the records is shown as `not run`, never dropped and never trained here (this
script only reads). The grid's settings (model, task, budget, steps, ...) are read from the records, which
must all share them: records of another setting are refused.
"""
import argparse, gzip, json, shutil
from pathlib import Path
import lora_lite.compare as C

GRID = ('protocol', 'lora_lite', 'model', 'dtype', 'device', 'data', 'targets', 'layers', 'budget', 'steps', 'batch', 'eval_batch')


def load(paths) -> dict:
    "Records of every file, merged by run key; refuses records of different grid settings."
    recs = {}
    for p in paths:
        for r in json.load(gzip.open(p, 'rt')): recs[C.run_key(r['settings'])] = r
    grids = {json.dumps({k: r['settings'][k] for k in GRID}, sort_keys=True) for r in recs.values()}
    if len(grids) != 1: raise SystemExit(f"the records hold {len(grids)} different grid settings; pass one grid's files")
    return recs


def _missing(settings, what='not run'):
    return dict(status='not run', error=what, curve=[], trainable=None, s_step=None, peak_mib=None, settings=settings)


def _match(v, recs, budget) -> C.Match:
    s, n = recs[0]['settings'], max(r['trainable'] or 0 for r in recs)
    m = C.Match(v, s['knob'], s['value'], n, budget)
    if m.knob == 'fixed': m.note = f'fixed size: {n:,} trainable; the budget cannot be reached'
    elif not m.ok: m.note = f"nearest reachable: {m.knob}={m.value} gives {n:,} ({100 * (n / budget - 1):+.1f}%)"
    return m


def variant_results(v, recs, lrs, seeds):
    "`_variant`'s result for `v` from its records: the learning rate chosen on validation, placeholders for what is missing."
    at = {(r['settings']['lr'], r['settings']['seed']): r for r in recs}
    s0 = dict(recs[0]['settings'])
    tuned = {lr: at.get((lr, 0)) or _missing(s0 | dict(lr=lr, seed=0)) for lr in lrs}
    lr = C.choose_lr(tuned)
    if lr is None: return dict(lr=None, runs=tuned, seeds=[])
    first = tuned[lr] if 'test' in tuned[lr] else _missing(tuned[lr]['settings'], 'test splits not scored')
    rest = [at.get((lr, k)) or _missing(s0 | dict(lr=lr, seed=k)) for k in range(1, seeds)]
    return dict(lr=lr, runs=tuned, seeds=[first, *rest])


def assemble(recs: dict, lrs, seeds, variants=None) -> dict:
    by = {}
    for r in recs.values(): by.setdefault(r['settings']['variant'], []).append(r)
    base = by.pop('base', [None])[0]
    variants = C._order(variants or sorted(by))
    some = next(iter(recs.values()))['settings']
    matches = {v: _match(v, by[v], some['budget']) for v in variants if v in by}
    results = {v: variant_results(v, by[v], lrs, seeds) for v in variants if v in by}
    ref = results.get('lora', {}).get('seeds')
    rows = [C.base_row(base)] if base else []
    rows += [C.variant_row(v, matches[v], results[v], ref) if v in by else C._broken_row(v, 'not run') for v in variants]
    for r in rows: r['status'] = r['status'].replace('failed: not run', 'not run')
    settings = {k: some[k] for k in GRID} | dict(task=some.get('task', '?'), variants=variants, lrs=list(lrs), seeds=seeds)
    return dict(settings=settings, matches={v: vars(m) for v, m in matches.items()}, base=base, results=results, rows=rows,
                markdown=C.markdown_table(rows))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('out')
    p.add_argument('runs', nargs='+')
    p.add_argument('--lrs', type=float, nargs='+', required=True)
    p.add_argument('--seeds', type=int, required=True)
    p.add_argument('--task', default='reverse')
    p.add_argument('--variants', nargs='+')
    a = p.parse_args(argv)
    recs = load(a.runs)
    res = assemble(recs, a.lrs, a.seeds, a.variants)
    res['settings']['task'] = a.task
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    C._write_report(out, res)
    with gzip.open(out / 'runs.json.gz', 'wt') as f: json.dump(sorted(recs.values(), key=lambda r: C.run_key(r['settings'])), f)
    print(C._title(res['settings']).replace('\n', ' · '), '\n')
    print(res['markdown'])


if __name__ == '__main__': main()
