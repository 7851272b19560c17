#!/usr/bin/env node
// Builds the libtorch addon with cmake-js against the libtorch that find-libtorch.js chooses.
// Skips the build when the addon is newer than every native source and was built against the
// same libtorch (recorded in build/torch-stamp.json), so repeated runs are quick.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findLibtorch } from './find-libtorch.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const addon = join(root, 'native', 'build', 'Release', 'dpo_torch.node');
const stampFile = join(root, 'native', 'build', 'torch-stamp.json');

function newestSource() {
  const dir = join(root, 'native', 'src');
  const files = readdirSync(dir).map((f) => join(dir, f));
  files.push(join(root, 'native', 'CMakeLists.txt'));
  return Math.max(...files.map((f) => statSync(f).mtimeMs));
}

const torch = findLibtorch();
const stamp = JSON.stringify({ dir: torch.dir, version: torch.version });
const force = process.argv.includes('--force');
if (!force && existsSync(addon) && existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp &&
    statSync(addon).mtimeMs > newestSource()) {
  process.exit(0);
}

console.error(`[build-native] building the addon against libtorch ${torch.version} (${torch.dir})`);
const cmakeJs = join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
const defines = [
  `--CDCMAKE_PREFIX_PATH=${torch.dir};${join(torch.dir, 'share', 'cmake')}`,
  `--CDDPO_CXX11_ABI=${torch.cxx11Abi ? 1 : 0}`,
];
if (process.env.DPO_TORCH_PATHS_MODE === '1') {
  defines.push('--CDDPO_TORCH_PATHS_MODE=ON', `--CDDPO_TORCH_DIR=${torch.dir}`);
}
const jobs = process.env.DPO_BUILD_JOBS ?? '2';
const result = spawnSync(process.execPath, [cmakeJs, 'compile', '-d', 'native', '--parallel', jobs, ...defines], {
  cwd: root,
  stdio: ['ignore', 'inherit', 'inherit'],
  env: { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: jobs },
});
if (result.status !== 0) {
  console.error('[build-native] the addon build failed (see the compiler output above).');
  process.exit(result.status ?? 1);
}
writeFileSync(stampFile, stamp);
