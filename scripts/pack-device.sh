#!/usr/bin/env bash
# Packs what a GPU run of scripts/gpu-check.sh needs into .device/ (git-ignored; carried with the
# device tool's `carry: [".device"]`): the GPU machine has PyTorch, nvcc and CMake but no Node.js and
# no package registry, and ../shared does not travel.
#   .device/node.xz             this machine's Node.js (../shared/device/pack-node.sh)
#   .device/node_modules.tar.xz the npm dependencies the build, the tests and the benchmarks use
#   .device/dist.tar.xz         the compiled TypeScript
#   .device/fixtures.tar.xz     the tiny fixture pipelines the device tests use
#   .device/gloo.tar.xz         gloo's headers (native/deps/gloo, fetched by the build here) for c10d
#   .device/pyref.tar.xz        diffusers 0.20 and huggingface_hub 0.16.4 sources for the reference side
#                               (from DPO_DIFFUSERS_PYTHONPATH; docs/benchmarks.md says how to make it)
# Run from the project root after `npm run setup`; the total must stay under the tool's 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${DPO_SHARED:-../shared}"
mkdir -p .device
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
[ -f .device/node.xz ] || bash "$shared/device/pack-node.sh"
npx --no-install tsc -b
# typescript and the type packages are build-time only: dist/ travels compiled
tar -cJf .device/node_modules.tar.xz --exclude='node_modules/typescript' --exclude='node_modules/@types' --exclude='node_modules/.cache' node_modules
tar -cJf .device/dist.tar.xz dist
# the device tests use the tiny UNets; the GPU benchmark builds full-size models from bench/gpu_config.json
tar -cJf .device/fixtures.tar.xz -C "$shared/fixtures" tiny-sd/unet tiny-sdxl/unet
# the GPU machine cannot fetch gloo's headers: multi-process training (stage d) needs them
if [ -d native/deps/gloo ]; then tar -cJf .device/gloo.tar.xz -C native/deps gloo; else rm -f .device/gloo.tar.xz; fi
if [ -n "${DPO_DIFFUSERS_PYTHONPATH:-}" ]; then
  tar -cJf .device/pyref.tar.xz --exclude='__pycache__' -C "$DPO_DIFFUSERS_PYTHONPATH" diffusers huggingface_hub
else
  echo "[pack-device] DPO_DIFFUSERS_PYTHONPATH is not set: the GPU run will skip the diffusers reference side" >&2
  rm -f .device/pyref.tar.xz
fi
du -ch .device/* | tail -n 1
