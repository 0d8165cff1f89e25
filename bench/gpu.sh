#!/usr/bin/env bash
# The WebGPU figures on a GPU machine in one go, for a machine that is held for minutes:
#   1. the machine, what its WebGPU adapter offers (bench/adapter.ts), and what
#      `longlora backends --tensor-cores` makes of it;
#   2. the subgroup-matrix (tensor-core) tests on this GPU (the kernels, and a LongLoRA
#      step and a short training run on them), then every WebGPU kernel test (against the
#      CPU reference) and the golden parity against PyTorch (models, training steps) on it;
#   3. the benchmark, bench/webgpu.ts: matmul, attention, PyTorch's training step, ours
#      (bf16, and f16 on tensor cores where the adapter has them), decoding.
# Each step runs under its own time limit, and a step that fails does not stop the next.
# Everything is logged to OUTDIR/gpu.log, and the benchmark's figures to
# OUTDIR/webgpu.json, which is rewritten after each of its parts (a run cut short keeps
# what it measured). Extra arguments go to the benchmark.
#
#   npm run build && bash bench/gpu.sh OUTDIR [bench options]
#
# Needs node (>= 20) on PATH, the built project with its `webgpu` package, and a Vulkan
# driver for the GPU; for the comparison, a Python with a CUDA PyTorch ($LONGLORA_PYTHON or
# python3). Limits in seconds: GPU_TEST_SECONDS (default 120, the tests together),
# GPU_BENCH_SECONDS (default 420): with the start-up, under 10 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash bench/gpu.sh OUTDIR [bench options]}
shift
mkdir -p "$out"
[[ -f dist/bench/webgpu.js ]] || { echo "dist/ is missing: run npm run build first" >&2; exit 2; }

step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
ran() { local rc=$1; [[ $rc == 124 || $rc == 137 ]] && echo "   (stopped at its time limit)"; [[ $rc != 0 ]] && status=1; return 0; }
status=0
tests=${GPU_TEST_SECONDS:-120}
exec > >(grep --line-buffered -v -e 'artificially reduced from' -e '# test name does not match pattern' | tee "$out/gpu.log") 2>&1
log=$!
step machine
date -u
uname -srm
echo "node $(node --version)"
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; fi

step "WebGPU adapter"
timeout -k 15 60 node dist/bench/adapter.js; ran $?
timeout -k 15 60 node dist/src/cli/main.js backends --tensor-cores; ran $?

step "subgroup-matrix tests on this GPU"
t0=$SECONDS
timeout -k 15 "$tests" node --test --test-reporter=spec --test-name-pattern='subgroup|tensor' dist/test/backend/webgpu.test.js dist/test/train/mixed-precision.test.js; ran $?

step "WebGPU kernel tests and the PyTorch golden parity on this GPU"
left=$(( tests - (SECONDS - t0) ))
(( left < 30 )) && left=30
timeout -k 15 "$left" node --test --test-reporter=dot dist/test/backend/webgpu.test.js dist/test/backend/webgpu-select.test.js \
  dist/test/models/golden.test.js dist/test/train/golden-train.test.js; ran $?

step benchmark
timeout -k 15 "${GPU_BENCH_SECONDS:-420}" node dist/bench/webgpu.js --json "$out/webgpu.json" "$@"; ran $?

step "done, exit status $status"
exec >&- 2>&-
wait "$log"
exit "$status"
