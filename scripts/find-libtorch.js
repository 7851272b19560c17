#!/usr/bin/env node
// Finds the libtorch the addon builds against, in this order:
//   1. LIBTORCH: a libtorch folder (include/, lib/, share/cmake/) or a Python torch package folder;
//   2. the Python torch package of the python on PATH (DPO_PYTHON overrides the interpreter).
// Prints a JSON description with --json; exits 3 when none is found (setup.sh then installs one).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

function headerVersion(dir) {
  for (const rel of ['include/torch/headeronly/version.h', 'include/torch/csrc/api/include/torch/version.h']) {
    const file = join(dir, rel);
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    const part = (name) => text.match(new RegExp(`#define TORCH_VERSION_${name}\\s+(\\d+)`))?.[1];
    if (part('MAJOR')) return `${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}`;
  }
  return undefined;
}

function describe(dir, source, cxx11Abi = true) {
  const version = headerVersion(dir);
  if (!version) return undefined;
  if (!existsSync(join(dir, 'lib', 'libtorch.so')) && !existsSync(join(dir, 'lib', 'libtorch_cpu.so'))) return undefined;
  const major = Number(version.split('.')[0]);
  if (major < 2) {
    throw new Error(`libtorch ${version} at ${dir} (${source}) is too old: diffusion-dpo needs libtorch 2.x ` +
      `(pip install torch, or set LIBTORCH to a libtorch 2.x folder)`);
  }
  return { dir, version, source, cxx11Abi, cuda: existsSync(join(dir, 'lib', 'libtorch_cuda.so')) };
}

/**
 * Whether the addon links this libtorch by paths rather than through CMake's find_package(Torch):
 * always for a CUDA libtorch (its Caffe2 config wants nvcc and a CUDA toolkit at configure time, and
 * would link that toolkit's runtime beside the wheel's own; the addon has no CUDA code), never for a
 * CPU one; DPO_TORCH_PATHS_MODE=1 or 0 decides otherwise.
 */
export function linkByPaths(torch, env = process.env) {
  if (env.DPO_TORCH_PATHS_MODE === '1') return true;
  if (env.DPO_TORCH_PATHS_MODE === '0') return false;
  return torch.cuda;
}

export function pythonExecutable() {
  return process.env.DPO_PYTHON ?? 'python3';
}

export function findLibtorch({ required = true } = {}) {
  if (process.env.LIBTORCH) {
    const dir = resolve(process.env.LIBTORCH);
    const found = describe(dir, 'LIBTORCH');
    if (!found) throw new Error(`LIBTORCH=${dir} is not a libtorch folder (expected include/torch and lib/libtorch.so)`);
    return found;
  }
  const probe = spawnSync(pythonExecutable(), ['-c',
    'import json, os, torch; print(json.dumps({"dir": os.path.dirname(torch.__file__), ' +
    '"abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI)}))'], { encoding: 'utf8' });
  if (probe.status === 0) {
    const { dir, abi } = JSON.parse(probe.stdout.trim().split('\n').pop());
    const found = describe(dir, `python torch (${pythonExecutable()})`, abi);
    if (found) return found;
  }
  if (!required) return undefined;
  throw new Error('no libtorch found: set LIBTORCH to a libtorch 2.x folder, or install the Python torch package ' +
    `for ${pythonExecutable()} (python3 -m pip install torch)`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const found = findLibtorch({ required: false });
    if (!found) process.exit(3);
    console.log(process.argv.includes('--json') ? JSON.stringify(found) : `${found.version} ${found.dir}`);
  } catch (e) {
    console.error(`[find-libtorch] ${e.message}`);
    process.exit(2);
  }
}
