"""Minimal reproduction: FSDP2 mixed precision silently corrupts a bitsandbytes 4-bit weight stored as float16.

    python bench/fsdp_4bit_cast.py            # one process (gloo on CPU); under torchrun: every rank, rank 0 prints

No lora-lite involved. One nn.Linear is quantized to NF4 three times, holding the same packed codes in
three `quant_storage` dtypes, each wrapped in `fully_shard` with `MixedPrecisionPolicy(param_dtype=bfloat16)`.
FSDP2 casts every floating-point parameter whose dtype differs from `param_dtype`, value by value
(torch/distributed/fsdp/_fully_shard/_fsdp_param.py, `init_dtype_attrs`; integer parameters are
never cast). For packed 4-bit codes that rewrites the bytes bitsandbytes decodes:

- uint8: not cast, output equals the unsharded layer;
- bfloat16: already the param_dtype, not cast, equal;
- float16: cast to bfloat16, same byte count, so the forward runs and returns a wrong result;
- float32: cast to bfloat16, half the bytes: a shape error.
"""
import os, sys, torch, torch.distributed as dist
from torch import nn
import bitsandbytes as bnb
from torch.distributed.fsdp import fully_shard, MixedPrecisionPolicy
from torch.distributed.device_mesh import init_device_mesh


def q4(lin, storage, device):
    q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=False, compute_dtype=torch.float32,
                          quant_type='nf4', quant_storage=storage)
    q.weight = bnb.nn.Params4bit(lin.weight.detach().clone(), requires_grad=False, quant_type='nf4',
                                 quant_storage=storage, module=q)
    q = q.to(device)
    q.support_avx512bf16_for_cpu = False  # the CPU repacking trap (see /work/shared/ENVIRONMENT.md); not at issue here
    return q


def main():
    cuda = torch.cuda.is_available()
    device = torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0))) if cuda else torch.device('cpu')
    if 'RANK' in os.environ: dist.init_process_group('nccl' if cuda else 'gloo')
    else: dist.init_process_group('gloo', store=dist.HashStore(), rank=0, world_size=1)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    torch.manual_seed(0)
    lin, x = nn.Linear(256, 128, bias=False), torch.randn(4, 256, device=device)
    with torch.no_grad(): ref = q4(lin, torch.uint8, device)(x)
    say = print if dist.get_rank() == 0 else (lambda *a: None)
    say(f"torch {torch.__version__}, bitsandbytes {bnb.__version__}, {dist.get_world_size()} rank(s), {device.type}")
    say('| quant_storage | param_dtype | result | max abs diff vs unsharded |')
    say('|---|---|---|---|')
    for storage in (torch.uint8, torch.bfloat16, torch.float16, torch.float32):
        m = nn.Sequential(q4(lin, storage, device))
        fully_shard(m, mesh=mesh, mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16))
        try:
            with torch.no_grad(): y = m(x.bfloat16()).float()
            d = (y - ref).abs().max().item()
            verdict = 'equal (bf16 input rounding)' if d < 0.05 * ref.abs().max().item() else '**silently wrong**'
        except Exception as e: d, verdict = None, f'error: {type(e).__name__}: {str(e)[:60]}'
        say(f"| {str(storage).split('.')[-1]} | bfloat16 | {verdict} | {'–' if d is None else f'{d:.3g}'} |")
    say(f"(max |y| of the unsharded layer: {ref.abs().max().item():.3g})")
    dist.destroy_process_group()


if __name__ == '__main__': main()
