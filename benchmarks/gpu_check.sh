#!/usr/bin/env bash
# GPU acceptance run: everything that still needs a GPU, in one go, under 8 minutes on one H100.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]      # default: ngpt_results/gpu_check-<date>
#
# Needs only this repository, installed (`pip install -c requirements/lock.txt -e ".[dev]"`
# over torch's CUDA build), and no network: the campaigns train on the built-in corpus. Each
# step has its own time limit, so the run ends on time even if one step hangs; a step that
# fails or runs out of time is marked so in the results and the others still run.
#
#   1. the CUDA-only tests                     pytest -m gpu
#   2. throughput and MFU at 11x768, bf16      benchmarks/throughput.py, eager, then compiled
#   3. compile reuse on CUDA                   benchmarks/compile_reuse.py at 11x768
#   4. a 4-trial campaign, gpus_per_trial 0.5  two trials share the GPU at a time
#   5. an out-of-memory trial                  a CUDA OOM ends `infeasible`, not retried
#
# Every figure goes to OUT_DIR/gpu_check.md (to paste into benchmarks/RESULTS.md), each step's
# full output to OUT_DIR/<step>.log. Exit status: 0 when every step passed, 1 otherwise, 2
# without CUDA (one line on stderr, nothing run).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # Ray's workers import this checkout
"$PY" -c '
import sys, torch
if not torch.cuda.is_available():
    build = torch.version.cuda or "none"
    sys.exit(f"gpu_check: CUDA is not available (torch {torch.__version__}, CUDA build {build}): "
             "run it on a machine with an NVIDIA GPU and a CUDA build of torch")
' || exit 2

OUT=${1:-ngpt_results/gpu_check-$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
: > "$OUT/steps.tsv"

step() {  # step NAME SECONDS COMMAND...: run it with a time limit, record status and duration
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    echo "gpu_check: $name (at most ${limit} s)"
    timeout --signal=INT --kill-after=20 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - start ))" >> "$OUT/steps.tsv"
    echo "gpu_check: $name: exit $rc, $(( $(date +%s) - start )) s"
}

# 4 trials of a 6x256 nGPT, two at a time on the one GPU (Ray's fractional GPUs)
cat > "$OUT/packing.yaml" <<'YAML'
name: gpu-packing
search:
  optim.lr: {grid: [3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2]}
searcher: grid
scheduler: fifo
resources: {gpus_per_trial: 0.5, cpus_per_trial: 2}
base:
  model: {n_layer: 6, n_embd: 256, n_head: 4, block_size: 128}
  data: {dir: builtin, batch_size: 32, val_tokens: 16384}
  train: {steps: 300, eval_every: 100, device: cuda, compile: "off"}
YAML
# an 11x768 trial that fits, and one 48 layers deep at 120 x 1024 tokens a step, whose
# activations need hundreds of GB: a real CUDA out-of-memory error on any GPU of today
cat > "$OUT/oom.yaml" <<'YAML'
name: gpu-oom
variants:
  fits: {}
  too_big: {model.n_layer: 48, data.batch_size: 120}
search:
  variant: {grid: [fits, too_big]}
searcher: grid
scheduler: fifo
max_failures: 2
resources: {gpus_per_trial: 1, cpus_per_trial: 2}
base:
  model: {n_layer: 11, n_embd: 768, n_head: 6, block_size: 1024}
  data: {dir: builtin, batch_size: 8, val_tokens: 16384}
  train: {steps: 20, eval_every: 10, device: cuda, compile: "off"}
YAML

# the limits add up to 450 s: with the checks and the report, under 8 minutes
step tests 30 "$PY" -m pytest -m gpu -q -n 0 -p no:cacheprovider tests
step throughput_eager 60 "$PY" benchmarks/throughput.py --sizes 11x768 \
    --batch 32x128,64x1024 --variants gpt,ngpt,ngpt_k7 --compile off --repeats 3
step throughput_compiled 120 "$PY" benchmarks/throughput.py --sizes 11x768 --batch 64x1024 \
    --variants ngpt --compile on --repeats 3
step compile_reuse 110 "$PY" benchmarks/compile_reuse.py --size 11x768 --batch 32x128 \
    --steps 10 --alphas 0.15,0.28
step campaign_packing 70 "$PY" -m ngpt_tune run "$OUT/packing.yaml" --storage "$OUT" \
    --name packing
step campaign_oom 60 "$PY" -m ngpt_tune run "$OUT/oom.yaml" --storage "$OUT" --name oom

"$PY" benchmarks/gpu_check_report.py "$OUT" > "$OUT/gpu_check.md"
status=$?
cat "$OUT/gpu_check.md"
echo "gpu_check: figures in $OUT/gpu_check.md, logs in $OUT/"
exit $status
