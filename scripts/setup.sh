#!/usr/bin/env bash
# One-time (and idempotent) set-up, run by `npm start`, `npm test` and the other README commands:
#   1. npm dependencies (skipped when node_modules matches package-lock.json);
#   2. a libtorch: LIBTORCH, else the Python torch package; when neither exists, `pip install torch`;
#   3. the native addon (skipped when up to date);
#   4. the TypeScript build (incremental).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[setup] $*" >&2; }

major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  log "Node.js >= 20 is required (found $(node --version))"; exit 1
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

status=0
node scripts/find-libtorch.js >/dev/null || status=$?
if [ "$status" = 2 ]; then exit 1; fi
if [ "$status" = 3 ]; then
  if [ -n "${LIBTORCH:-}" ]; then log "LIBTORCH=$LIBTORCH is not usable"; exit 1; fi
  py="${DPO_PYTHON:-python3}"
  spec="${DPO_TORCH_PIP_SPEC:-torch}"
  log "no libtorch found: installing the Python torch package ($py -m pip install $spec)"
  if ! "$py" -m pip install --quiet "$spec" >&2; then
    log "could not install torch with pip. Install libtorch 2.x yourself and point LIBTORCH at it"
    log "(a folder with include/ and lib/), or make '$py -m pip install torch' work."
    exit 1
  fi
  node scripts/find-libtorch.js >/dev/null
fi

node scripts/build-native.js
npx --no-install tsc -b
