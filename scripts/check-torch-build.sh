#!/usr/bin/env bash
# Builds the addon out of tree against another libtorch and runs the whole test suite on the CPU
# with it: the check that the addon still builds and works on every current libtorch 2.x. Without
# a GPU, a CUDA-linked build whose CPU tests pass is the CUDA signal we can get.
#
#   scripts/check-torch-build.sh TORCH_DIR [test file filters...]
#
# TORCH_DIR: a libtorch folder (include/, lib/) or a Python torch package folder, e.g. the CUDA
# wheel installed without its Python dependencies:
#   pip install --no-deps --target /opt/torch214 torch==2.14.1 nvidia-cublas ... (see docs/tensor-engine.md)
#   scripts/check-torch-build.sh /opt/torch214/torch
# The project's own build (native/build) is left as it is.
set -euo pipefail
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
  echo "usage: scripts/check-torch-build.sh TORCH_DIR [test filters...]  (TORCH_DIR: a libtorch 2.x or Python torch package folder)" >&2
  exit 2
fi
torch_dir=$(cd "$1" && pwd)
shift
cd "$(dirname "$0")/.."

bash scripts/setup.sh
out="${DPO_CHECK_BUILD_DIR:-$(mktemp -d -t dpo-torch-build.XXXXXX)}"
LIBTORCH="$torch_dir" node scripts/build-native.js --force --out "$out"
addon="$out/Release/dpo_torch.node"
echo "[check-torch-build] running the tests with $addon" >&2
DPO_ADDON="$addon" node -e '
  import("./dist/src/torch/index.js").then((t) => {
    const b = t.buildInfo();
    console.error(`[check-torch-build] loaded libtorch ${b.torchVersion} from ${b.torchLibDir}; CUDA available: ${b.cudaAvailable} (${b.cudaDeviceCount} devices)`);
  });'
DPO_ADDON="$addon" node scripts/run-tests.js "$@"
