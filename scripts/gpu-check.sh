#!/usr/bin/env bash
# One command for a GPU machine (and, with --cpu, for CI on tiny models, so that it never rots):
# builds the addon against the machine's torch, runs the device tests on it, then the GPU
# benchmarks against diffusers 0.20 in the same run, writing everything to OUTDIR as it goes:
#   OUTDIR/stages.jsonl   one line per stage: exit status and seconds
#   OUTDIR/<stage>.log    each stage's output
#   OUTDIR/gpu-bench.json, gpu-bench.md   the benchmark figures (bench/gpu.ts), written after each stage
#
#   scripts/gpu-check.sh OUTDIR          on a GPU machine, after scripts/pack-device.sh here and with
#                                        .device carried (the device tool: carry [".device"]); fits 10 minutes
#   scripts/gpu-check.sh OUTDIR --cpu    tiny models on the CPU, in a few minutes (.ci/run runs it)
#
# Exits non-zero when the build or the tests fail; benchmark stages that run out of their time box
# are recorded as such and do not fail the run in GPU mode.
set -uo pipefail
if [ $# -lt 1 ]; then echo "usage: scripts/gpu-check.sh OUTDIR [--cpu]" >&2; exit 2; fi
out=$(mkdir -p "$1" && cd "$1" && pwd)
mode=gpu
[ "${2:-}" = "--cpu" ] && mode=cpu
cd "$(dirname "$0")/.."
: > "$out/stages.jsonl"
failed=0

log() { echo "[gpu-check] $*" | tee -a "$out/gpu-check.log" >&2; }

# stage NAME SECONDS COMMAND...: time-boxed, output to OUTDIR/NAME.log, a line in stages.jsonl
stage() {
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s)
  log "$name: $* (at most ${limit}s)"
  timeout --kill-after=15 "$limit" "$@" > "$out/$name.log" 2>&1
  rc=$?
  echo "{\"stage\":\"$name\",\"exit\":$rc,\"seconds\":$(( $(date +%s) - start ))}" >> "$out/stages.jsonl"
  if [ "$rc" -ne 0 ]; then log "$name: exit $rc (last lines below)"; tail -n 20 "$out/$name.log" >&2; fi
  return "$rc"
}

if [ "$mode" = gpu ]; then
  # the GPU machine has no Node.js and no registry: unpack what scripts/pack-device.sh carried
  if ! command -v node >/dev/null; then xz -dc .device/node.xz > /usr/local/bin/node && chmod +x /usr/local/bin/node; fi
  [ -d node_modules ] || tar -xJf .device/node_modules.tar.xz
  [ -d dist ] || tar -xJf .device/dist.tar.xz
  mkdir -p .device/fixtures && tar -xJf .device/fixtures.tar.xz -C .device/fixtures
  if [ -f .device/gloo.tar.xz ]; then mkdir -p native/deps && tar -xJf .device/gloo.tar.xz -C native/deps; fi
  export FIXTURES_DIR="$PWD/.device/fixtures"
  if [ -f .device/pyref.tar.xz ]; then
    mkdir -p .device/pyref && tar -xJf .device/pyref.tar.xz -C .device/pyref
    export DPO_DIFFUSERS_PYTHONPATH="$PWD/.device/pyref"
  fi
  export DPO_TEST_DEVICE=cuda DPO_BUILD_JOBS="$(nproc)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/nvidia-smi.txt" 2>&1 || true
  stage build 240 node scripts/build-native.js --force || { log "the addon did not build"; exit 1; }
  stage doctor 60 node bin/diffusion-dpo.js doctor --json || failed=1
  stage tests 180 node scripts/run-tests.js gpu activation_checkpoint gradient_checkpointing || failed=1
  stage bench 330 node dist/bench/gpu.js --out "$out" --budget 50 || log "the benchmark stopped early; gpu-bench.json holds what finished"
else
  bash scripts/setup.sh >&2 || exit 1
  export DPO_TEST_DEVICE=cpu
  stage doctor 60 node bin/diffusion-dpo.js doctor --json || failed=1
  stage tests 600 node scripts/run-tests.js gpu || failed=1
  stage bench 300 node dist/bench/gpu.js --out "$out" --cpu --budget 20 --repeats 1 || failed=1
fi
log "done: $(tr '\n' ' ' < "$out/stages.jsonl")"
exit "$failed"
