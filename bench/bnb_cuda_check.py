#!/usr/bin/env python
"""Every lora-lite variant on every bitsandbytes quantized base (int8, nf4, fp4; fp32/bf16 compute), built
directly from nn.Linear and through transformers' BitsAndBytesConfig, checked against the dense twin.
Prints a markdown report (environment + one row per case); exits 1 if any case fails.

usage: python bench/bnb_cuda_check.py [--device cuda] [--variants lora,delora] [--kinds nf4,int8] [--where layers,hf]
The checks are lora_lite.quant.quant_case / check_case (nbs/20_quantized.ipynb)."""
import argparse, logging, platform, sys, time, warnings
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--variants', default='', help='comma-separated (default: every registered variant)')
    ap.add_argument('--kinds', default='', help='comma-separated subset of int8,nf4,nf4-bf16,fp4,fp4-bf16 (default: all)')
    ap.add_argument('--where', default='layers,hf', help="'layers' (TinyModel, nn.Linear quantized directly), 'hf' (Qwen3 via BitsAndBytesConfig)")
    a = ap.parse_args()

    import torch, transformers, bitsandbytes
    if a.device == 'cpu': torch.set_num_threads(1)
    elif not torch.cuda.is_available(): sys.exit(f"--device {a.device}: CUDA is not available")
    transformers.utils.logging.set_verbosity_error(); transformers.utils.logging.disable_progress_bar()
    logging.getLogger('bitsandbytes').setLevel(logging.ERROR)
    warnings.filterwarnings('ignore')
    from lora_lite.quant import KINDS, variant_names, quant_case, check_case, quant_table, support_table
    import lora_lite

    variants = a.variants.split(',') if a.variants else variant_names()
    kinds = a.kinds.split(',') if a.kinds else list(KINDS)
    wheres = a.where.split(',')
    dev = torch.cuda.get_device_name(a.device) if a.device.startswith('cuda') else platform.processor() or platform.machine()
    print(f"# bitsandbytes quantized bases on `{a.device}`\n")
    print(f"- device: {dev}\n- torch {torch.__version__} (CUDA {torch.version.cuda}), bitsandbytes {bitsandbytes.__version__}, "
          f"transformers {transformers.__version__}, lora-lite {lora_lite.__version__}, Python {platform.python_version()}")
    print(f"- command: `python bench/bnb_cuda_check.py {' '.join(sys.argv[1:])}`\n")

    results, failed, t0 = [], [], time.time()
    for v in variants:
        for w in wheres:
            for k in kinds:
                t, r = time.time(), dict(variant=v, kind=k, where=w, status='error')
                try:
                    r = quant_case(v, k, w, a.device)
                    check_case(r, a.device); r['result'] = 'PASS'
                except Exception as e:
                    r['result'] = f"FAIL: {type(e).__name__}: {str(e)[:150]}".replace('|', '/').replace('\n', ' ')
                    failed.append(r)
                r['seconds'] = round(time.time() - t, 1)
                results.append(r)
                print(f"{v:>10} {k:>9} {w:>6}: {r['result'][:100]} ({r['seconds']}s)", file=sys.stderr, flush=True)

    print(_table(results, quant_table))
    print(f"\n## Support\n\n{support_table([r for r in results if r['result'] == 'PASS'])}")
    print(f"\n{len(results) - len(failed)}/{len(results)} cases passed in {time.time() - t0:.0f}s.")
    sys.exit(1 if failed else 0)


def _table(results, quant_table):
    "quant_table plus a result column."
    lines = quant_table(results).split('\n')
    out = [lines[0] + ' result |', lines[1] + '---|']
    out += [l + f" {r['result']} |" for l, r in zip(lines[2:], results)]
    return '\n'.join(out)


if __name__ == '__main__': main()
