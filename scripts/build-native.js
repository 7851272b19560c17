#!/usr/bin/env node
// Builds the libtorch addon with cmake-js against the libtorch that find-libtorch.js chooses.
// Skips the build when the addon is newer than every native source and was built against the
// same libtorch (recorded in build/torch-stamp.json), so repeated runs are quick.
//
//   node scripts/build-native.js [--force] [--out DIR]   (--out: build elsewhere, e.g. against another libtorch)
//
// A CUDA libtorch (lib/libtorch_cuda.so) is linked by paths (find-libtorch.js linkByPaths; pytorch#133293).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findLibtorch, linkByPaths } from './find-libtorch.js';
import { glooHeaders } from './gloo-headers.js';
import { cudaHeaders } from './cuda-headers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outIndex = process.argv.indexOf('--out');
const buildDir = outIndex > 0 ? resolve(process.argv[outIndex + 1]) : join(root, 'native', 'build');
const addon = join(buildDir, 'Release', 'dpo_torch.node');
const stampFile = join(buildDir, 'torch-stamp.json');

function newestSource() {
  const dir = join(root, 'native', 'src');
  const files = readdirSync(dir).map((f) => join(dir, f));
  files.push(join(root, 'native', 'CMakeLists.txt'));
  return Math.max(...files.map((f) => statSync(f).mtimeMs));
}

const torch = findLibtorch();
const pathsMode = linkByPaths(torch);
// c10d (multi-process training): gloo's headers, and for NCCL the CUDA runtime's and NCCL's
const gloo = await glooHeaders(join(torch.dir, 'include'));
const nccl = gloo.include && torch.cuda ? cudaHeaders(torch.dir) : { include: null, reason: torch.cuda ? 'no gloo headers' : 'a CPU libtorch' };
const stamp = JSON.stringify({ dir: torch.dir, version: torch.version, pathsMode, gloo: gloo.include, nccl: nccl.include });
const force = process.argv.includes('--force');
if (!force && existsSync(addon) && existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp &&
    statSync(addon).mtimeMs > newestSource()) {
  process.exit(0);
}

// cmake-js compile only configures a build folder that has no cache: when what it was configured
// with changed (another libtorch, headers found since), configure afresh
const cache = join(buildDir, 'CMakeCache.txt');
if (existsSync(cache) && (!existsSync(stampFile) || readFileSync(stampFile, 'utf8') !== stamp)) rmSync(cache);
console.error(`[build-native] building the addon against libtorch ${torch.version}${torch.cuda ? ' (CUDA)' : ''} (${torch.dir})` +
  `${pathsMode ? ', linked by paths' : ''}${outIndex > 0 ? ` into ${buildDir}` : ''}`);
const cmakeJs = join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
const defines = [
  `--CDCMAKE_PREFIX_PATH=${torch.dir};${join(torch.dir, 'share', 'cmake')}`,
  `--CDDPO_CXX11_ABI=${torch.cxx11Abi ? 1 : 0}`,
];
if (pathsMode) defines.push('--CDDPO_TORCH_PATHS_MODE=ON', `--CDDPO_TORCH_DIR=${torch.dir}`);
if (gloo.include) defines.push(`--CDDPO_GLOO_INCLUDE=${gloo.include}`);
if (nccl.include) defines.push(`--CDDPO_NCCL_INCLUDES=${nccl.include.join(';')}`);
console.error(`[build-native] multi-process training: ${gloo.include ? `Gloo (headers from ${gloo.reason})` : `none (${gloo.reason})`}` +
  `${torch.cuda ? `; NCCL: ${nccl.include ? 'yes' : `no (${nccl.reason})`}` : ''}`);
const jobs = process.env.DPO_BUILD_JOBS ?? '2';
const result = spawnSync(process.execPath, [cmakeJs, 'compile', '-d', 'native', '-O', buildDir, '--parallel', jobs, ...defines], {
  cwd: root,
  stdio: ['ignore', 'inherit', 'inherit'],
  env: { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: jobs },
});
if (result.status !== 0) {
  console.error('[build-native] the addon build failed (see the compiler output above). To build against another libtorch, ' +
    'set LIBTORCH to its folder (a libtorch 2.x or a Python torch package); DPO_TORCH_PATHS_MODE=1 links it by paths without CMake\'s Torch config.');
  process.exit(result.status ?? 1);
}
writeFileSync(stampFile, stamp);
