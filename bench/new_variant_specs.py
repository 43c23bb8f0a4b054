"""Bench rows for the ten variants of nbs/40-49, in `train_step.variant_specs`'s format.

Each row is `(lora-lite config kwargs, PEFT config factory)`: the same method on the same 7 targets with the same
function at init and, up to the layouts noted below, the same trainable-parameter count. Hyper-parameters are
PEFT's defaults wherever the variant's notebook says lora-lite follows them; `r` (the bench's `--r`) sets the rank
only of the rank-sized methods whose PEFT default is LoRA's (LoHa, LoKr, VB-LoRA).

Two of PEFT's defaults do not fit every shape: C3A's `block_size=256` and VB-LoRA's `vector_length=256` must
divide every target's widths. They fit the Qwen3 0.6B and 8B shapes (all widths multiples of 1024), not `tiny`
(k/v out 64) or `host`. So `new_variant_specs(r)` gives PEFT's defaults (valid at 0.6b and 8b), and
`new_variant_specs(r, shape)` (a `SHAPES` name or entry) takes the largest setting <= PEFT's default that fits
every target of that shape (and lowers SHiRA's r where r·(d_in+d_out) > d_in·d_out, only at 'host'). At 'host'
(64-wide layers) VB-LoRA's r=16 with 32-long vectors trips lora-lite's adapter-size guard at attach: its
lora-lite row errors there (use --r 4, PEFT's default rank); every other row fits tiny, host, 0.6b and 8b.

    specs = {**variant_specs(args.r), **new_variant_specs(args.r, args.shape)}

Differences that stay, by design:
- boft: PEFT stores each b×b block in full (`boft_R`) and uses its skew part; lora-lite stores the b(b-1)/2
  free entries. Same rotations, PEFT counts n·b² per target against lora-lite's n·b(b-1)/2 (plus d_out scales
  on both sides). PEFT's default n_butterfly_factor=1 is kept: without its CUDA extension PEFT silently falls back
  to 1 factor, so a larger one would not be the same method on both sides.
- vblora: PEFT's VB-LoRA is not the base model at init (B A is random); lora-lite's default `start_at_base=True`
  subtracts the initial B0 A0 x (two frozen rank-r GEMMs more per target, no trainable parameter more).
- fourierft, c3a: PEFT's default init draws a nonzero update; both rows start at zero (PEFT's
  `init_weights=True`, lora-lite's default), which changes no cost.
"""
from __future__ import annotations
import math

TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
PEFT_C3A_BLOCK, PEFT_VBLORA_LENGTH, PEFT_SHIRA_R = 256, 256, 32


def target_widths(shape) -> dict:
    "`{target: (d_in, d_out)}` of a Qwen3 shape: a `train_step.SHAPES` name or entry."
    if isinstance(shape, str):
        try: from train_step import SHAPES
        except ImportError: from bench.train_step import SHAPES
        shape = SHAPES[shape]
    h, i = shape['hidden_size'], shape['intermediate_size']
    q, kv = shape['num_attention_heads'] * shape['head_dim'], shape['num_key_value_heads'] * shape['head_dim']
    return dict(q_proj=(h, q), k_proj=(h, kv), v_proj=(h, kv), o_proj=(q, h), gate_proj=(h, i), up_proj=(h, i),
                down_proj=(i, h))


def fit_divisor(widths: dict, most: int) -> int:
    "The largest `b <= most` dividing every width of every target."
    g = math.gcd(*[d for io in widths.values() for d in io])
    return max(b for b in range(1, min(g, most) + 1) if g % b == 0)


def fit_shira_r(widths: dict, most: int) -> int:
    "The largest SHiRA rank `<= most` with `r·(d_in + d_out) <= d_in·d_out` on every target."
    return min(most, *[i * o // (i + o) for i, o in widths.values()])


def new_variant_settings(r: int, shape=None) -> dict:
    "The shape-dependent settings: PEFT's defaults (`shape=None`), or the largest that fit `shape`."
    if shape is None: return dict(c3a_block=PEFT_C3A_BLOCK, vblora_length=PEFT_VBLORA_LENGTH, shira_r=PEFT_SHIRA_R)
    w = target_widths(shape)
    return dict(c3a_block=fit_divisor(w, PEFT_C3A_BLOCK), vblora_length=fit_divisor(w, PEFT_VBLORA_LENGTH),
                shira_r=fit_shira_r(w, PEFT_SHIRA_R))


def new_variant_specs(r: int, shape=None) -> dict:
    "`{name: (lora-lite config kwargs, PEFT config factory)}` for loha ... psoft; `shape` as in `new_variant_settings`."
    import peft
    T, s = TARGETS, new_variant_settings(r, shape)
    b, L, rs = s['c3a_block'], s['vblora_length'], s['shira_r']
    return {
        # scale alpha/r = 1, PEFT's default (r = alpha = 8)
        'loha':      (dict(variant='loha', r=r, alpha=r), lambda: peft.LoHaConfig(r=r, alpha=r, target_modules=T)),
        'lokr':      (dict(variant='lokr', r=r, alpha=r), lambda: peft.LoKrConfig(r=r, alpha=r, target_modules=T)),
        # PEFT's defaults: blocks of 4, one butterfly factor, the output scale boft_s
        'boft':      (dict(variant='boft', options=dict(block_size=4, n_butterfly_factor=1)),
                      lambda: peft.BOFTConfig(boft_block_size=4, boft_n_butterfly_factor=1, target_modules=T)),
        'fourierft': (dict(variant='fourierft', options=dict(n_frequency=1000, scaling=150.0, seed=777)),
                      lambda: peft.FourierFTConfig(n_frequency=1000, scaling=150.0, random_loc_seed=777,
                                                   init_weights=True, target_modules=T)),
        # SHiRA, MiSS: no scale in either library (lora-lite ignores alpha)
        'shira':     (dict(variant='shira', r=rs), lambda: peft.ShiraConfig(r=rs, target_modules=T)),
        # PEFT's r = 32, randlora_alpha = 640: scale 20
        'randlora':  (dict(variant='randlora', r=32, alpha=640),
                      lambda: peft.RandLoraConfig(r=32, randlora_alpha=640, target_modules=T)),
        'miss':      (dict(variant='miss', r=64), lambda: peft.MissConfig(r=64, target_modules=T)),
        'c3a':       (dict(variant='c3a', options=dict(block_size=b)),
                      lambda: peft.C3AConfig(block_size=b, init_weights=True, target_modules=T)),
        'vblora':    (dict(variant='vblora', r=r, options=dict(num_vectors=256, vector_length=L, topk=2)),
                      lambda: peft.VBLoRAConfig(r=r, num_vectors=256, vector_length=L, topk=2, target_modules=T)),
        # PEFT's r = psoft_alpha = 32, full SVD, exact Cayley map
        'psoft':     (dict(variant='psoft', r=32, alpha=32),
                      lambda: peft.PsoftConfig(r=32, psoft_alpha=32, target_modules=T)),
        # the same with the randomized SVD at attach (torch.svd_lowrank, q = r, PEFT's niter 10 and seed 0)
        'psoft-lowrank': (dict(variant='psoft', r=32, alpha=32, options=dict(svd='lowrank', niter=10, seed=0)),
                          lambda: peft.PsoftConfig(r=32, psoft_alpha=32, psoft_svd='lowrank',
                                                   psoft_svd_lowrank_niter=10, random_seed=0, target_modules=T)),
    }
