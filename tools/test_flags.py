"""What `nbdev_test` skips: the notebook cells flagged with a test flag from settings.ini (`tst_flags`).

    python tools/test_flags.py          # per notebook, how many cells each flag skips, and the command that runs them

`nbdev_test` prints only `Success.`; `nbdev_test --do_print --timing` names each notebook as it runs, with its time;
this lists what neither shows: the cells a plain run leaves out.
"""
from __future__ import annotations
import configparser, json, pathlib, re, sys
from collections import Counter

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_flags(root=ROOT) -> list[str]:
    "The `tst_flags` of settings.ini."
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(root / 'settings.ini', encoding='utf-8')
    return cfg['DEFAULT'].get('tst_flags', '').split()


def flagged_cells(nb_path, flags) -> Counter:
    "How many code cells of the notebook carry each flag (a `#| flag` line)."
    cells = json.loads(pathlib.Path(nb_path).read_text(encoding='utf-8'))['cells']
    found = Counter()
    for c in cells:
        if c['cell_type'] != 'code': continue
        src = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        for f in flags:
            if re.search(rf'^\s*#\s*\|\s*{re.escape(f)}\s*$', src, flags=re.M): found[f] += 1
    return found


def report(root=ROOT) -> str:
    flags = test_flags(root)
    lines = [f"nbdev_test skips the cells flagged {', '.join(flags)} unless --flags names the flag:"]
    total = Counter()
    for nb in sorted((root / 'nbs').glob('*.ipynb')):
        found = flagged_cells(nb, flags)
        total.update(found)
        if found: lines.append(f"  {nb.relative_to(root)}: " + ', '.join(f'{n} {f}' for f, n in sorted(found.items())))
    lines.append('in all: ' + (', '.join(f'{n} {f}' for f, n in sorted(total.items())) or 'none'))
    lines.append('run them: nbdev_test --flags "slow" (CPU), nbdev_test --flags "slow cuda" (a GPU machine); '
                 'one notebook: nbdev_test --path nbs/NAME.ipynb --flags slow')
    return '\n'.join(lines)


if __name__ == '__main__':
    print(report())
    sys.exit(0)
