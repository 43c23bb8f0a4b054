"""Run a notebook's code cells in one namespace, as `nbdev_test` would, on a machine without nbdev
(the GPU device has torch but not nbdev): cells flagged `#| <flag>` run only when the flag is given;
`#| eval: false` cells never run. Needs fastcore (the tests use its `test_*` helpers).

    python bench/nb_cells.py nbs/09_kernels.ipynb --flags cuda
"""
import argparse, json, linecache, re, sys, time

def cells(path, flags):
    "The notebook's code cells to run, with their index."
    skip_all = {'notest', 'slow', 'cuda'} - set(flags)
    for i, c in enumerate(json.load(open(path))['cells']):
        if c['cell_type'] != 'code': continue
        src = ''.join(c['source'])
        directives = {m.group(1).strip() for m in re.finditer(r'^#\|\s*(.+)$', src, re.M)}
        if 'eval: false' in directives or directives & skip_all: continue
        yield i, src

def main():
    p = argparse.ArgumentParser(); p.add_argument('notebooks', nargs='+'); p.add_argument('--flags', default='')
    a = p.parse_args()
    flags = [f for f in a.flags.split(',') if f]
    failed = 0
    for path in a.notebooks:
        ns, t0 = {'__name__': '__main__'}, time.perf_counter()
        try:
            for i, src in cells(path, flags):
                src = '\n'.join(l for l in src.splitlines() if not l.lstrip().startswith(('%', '!')))  # no IPython magics
                name = f'<{path} cell {i}>'
                linecache.cache[name] = (len(src), None, src.splitlines(True), name)  # Triton's jit reads kernel source through linecache
                exec(compile(src, name, 'exec'), ns)
            print(f'PASS {path} ({time.perf_counter() - t0:.1f} s, flags {flags})', flush=True)
        except Exception as e:
            failed += 1
            import traceback; traceback.print_exc()
            print(f'FAIL {path}: {type(e).__name__}: {e}', flush=True)
    sys.exit(1 if failed else 0)

if __name__ == '__main__': main()
