"""Check the rows of `new_variant_specs` on the tiny Qwen3 shape, on a CPU, in float32.

For each row: attach lora-lite, then PEFT, to the same tiny model; count trainable parameters; run one forward and
backward; check the logits are finite, equal to the base model's (both sides are the identity at init) and to each
other, and every trainable gradient is finite. First, without weights, each row's lora-lite rules (`check`,
`param_specs`, attach's size guard) on the 7 targets of the `--static` shapes, with the trainable counts there.
Exits 1 if a row fails a check that is not an explained difference.

    python bench/check_new_specs.py [--variants loha,boft] [--shape tiny] [--static 0.6b,8b]
"""
from __future__ import annotations
import argparse, math, os, sys, warnings
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from train_step import build_model, SHAPES, attach_ll, attach_peft, strip_peft  # noqa: E402
from new_variant_specs import new_variant_specs, target_widths  # noqa: E402


def boft_count_gap(widths: dict, b: int = 4) -> int:
    "PEFT's BOFT stores n full b×b blocks per target, lora-lite their b(b-1)/2 free entries: the count gap."
    return sum(i // b * (b * b - b * (b - 1) // 2) for i, _ in widths.values())


# rows whose PEFT side differs by design, and how (see new_variant_specs' docstring)
EXPLAINED = {'boft': 'count: PEFT stores full b×b blocks', 'vblora': 'init: PEFT is not the base model at init'}


def one_side(model, ids, attach):
    "Attach, forward + backward once, detach: (trainable count, logits, all grads finite, any grad nonzero)."
    params, undo, runner = attach()
    try:
        out = runner(input_ids=ids, labels=ids)
        out.loss.backward()
        grads = [p.grad for p in params]
        finite = all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
        moving = any(g is not None and bool(g.abs().sum() > 0) for g in grads)
        return sum(p.numel() for p in params), out.logits.detach().clone(), finite, moving
    finally:
        undo()
        for p in model.parameters(): p.grad = None


def check_row(name, llkw, factory, model, ids, base, widths, layers) -> list[str]:
    "Print one row's numbers; return its unexplained problems."
    n_ll, y_ll, fin_ll, mov_ll = one_side(model, ids, lambda: attach_ll(model, llkw, None))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # PEFT's BOFT warns that its CUDA extension does not build on a CPU
        n_pf, y_pf, fin_pf, mov_pf = one_side(model, ids, lambda: attach_peft(model, factory, False))
    after = model(input_ids=ids).logits.detach()
    d = lambda a, b: (a - b).abs().max().item()
    gap = n_pf - n_ll
    print(f"{name:10s} trainable ll {n_ll:9,d}  peft {n_pf:9,d}  (peft - ll {gap:+,d})  "
          f"|ll - base| {d(y_ll, base):.2e}  |peft - base| {d(y_pf, base):.2e}  |ll - peft| {d(y_ll, y_pf):.2e}  "
          f"grads finite {fin_ll}/{fin_pf}  moving {mov_ll}/{mov_pf}", flush=True)
    bad = []
    want_gap = boft_count_gap(widths) * layers if name == 'boft' else 0
    if gap != want_gap: bad.append(f'trainable counts differ by {gap:+,d} (expected {want_gap:+,d})')
    if not (torch.isfinite(y_ll).all() and torch.isfinite(y_pf).all()): bad.append('non-finite logits')
    if not (fin_ll and fin_pf): bad.append('non-finite or missing gradient')
    if not (mov_ll and mov_pf): bad.append('every gradient is zero')
    if d(y_ll, base) > 0: bad.append(f'lora-lite is not the identity at init ({d(y_ll, base):.2e})')
    if name != 'vblora' and d(y_pf, base) > 1e-5: bad.append(f'PEFT is not the identity at init ({d(y_pf, base):.2e})')
    if name != 'vblora' and d(y_ll, y_pf) > 1e-5: bad.append(f'lora-lite and PEFT differ ({d(y_ll, y_pf):.2e})')
    if d(after, base) > 0: bad.append('the base model changed after detaching')
    return bad



def static_check(shape: str, r: int) -> dict:
    "Each row's lora-lite `check`, `param_specs` and attach's size guard on `shape`'s 7 targets as meta layers: `{name: count or error}`."
    import lora_lite as ll
    from torch import nn
    from train_step import ll_config
    from lora_lite.adapter import MAX_ADAPTER_RATIO
    out, layers = {}, SHAPES[shape]['num_hidden_layers']
    for name, (kw, _) in new_variant_specs(r, shape).items():
        cfg, n = ll_config(kw, None), 0
        V = ll.get_variant(kw['variant'])
        try:
            for t, (i, o) in target_widths(shape).items():
                V.check(nn.Linear(i, o, bias=False, device='meta'), cfg)
                ps = V.param_specs(i, o, cfg)
                if (k := sum(math.prod(p.shape) for p in ps.values())) > MAX_ADAPTER_RATIO * i * o + 4096:
                    raise ValueError(f"{t}: {k:,d} adapter numbers, over attach's size guard")
                n += sum(math.prod(p.shape) for k, p in ps.items() if p.trainable and k != 'lora_bank')
            bank = ps.get('lora_bank')
            out[name] = n * layers + (math.prod(bank.shape) if bank is not None else 0)
        except Exception as e: out[name] = f'{type(e).__name__}: {str(e)[:200]}'
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--shape', default='tiny', choices=['tiny', 'host'])
    p.add_argument('--variants', default='', help="comma-separated (default: all); 'none': only the static check")
    p.add_argument('--r', type=int, default=16)
    p.add_argument('--static', default='0.6b,8b', help="shapes to check lora-lite's rules on, without weights")
    args = p.parse_args(argv)
    failed = {}
    for sh in filter(None, args.static.split(',')):
        for n, c in static_check(sh, args.r).items():
            print(f"{sh:5s} {n:10s} lora-lite trainable {c:,d}" if isinstance(c, int) else f"{sh:5s} {n:10s} FAIL {c}")
            if not isinstance(c, int): failed[f'{sh}/{n}'] = [c]
    torch.set_num_threads(1)
    specs = new_variant_specs(args.r, args.shape)
    names = [] if args.variants == 'none' else args.variants.split(',') if args.variants else list(specs)
    model = build_model(args.shape, torch.float32, torch.device('cpu'))
    widths = target_widths(args.shape)
    ids = torch.randint(0, SHAPES[args.shape]['vocab_size'], (2, 16), generator=torch.Generator().manual_seed(0))
    base = model(input_ids=ids).logits.detach()
    for n in names:
        llkw, factory = specs[n]
        try: bad = check_row(n, llkw, factory, model, ids, base, widths, model.config.num_hidden_layers)
        except Exception as e: bad = [f'{type(e).__name__}: {str(e)[:300]}']; strip_peft(model)
        if bad: failed[n] = bad; print(f"  FAIL {n}: {'; '.join(bad)}")
        elif n in EXPLAINED: print(f"  ok (explained: {EXPLAINED[n]})")
    print('all rows pass' if not failed else f'{len(failed)} rows fail: {sorted(failed)}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
