// Finds the headers ProcessGroupNCCL.hpp needs (native/src/dist_nccl.cc): the CUDA runtime's
// (cuda_runtime_api.h and the math libraries' headers that ATen/cuda/CUDAContext.h includes) and
// NCCL's (nccl.h). A CUDA torch wheel carries them in its sibling nvidia/* packages; a GPU machine
// with a toolkit has them under CUDA_HOME. DPO_CUDA_INCLUDE and DPO_NCCL_INCLUDE (folders,
// ':'-separated) come first.
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

function found(dirs, file) {
  return dirs.find((d) => existsSync(join(d, file)));
}

/** @returns {{ include: string[] | null, reason: string }} */
export function cudaHeaders(torchDir) {
  const nvidia = join(dirname(torchDir), 'nvidia');
  const wheelIncludes = existsSync(nvidia)
    ? readdirSync(nvidia).map((p) => join(nvidia, p, 'include')).filter((d) => existsSync(d))
    : [];
  const cudaHome = process.env.CUDA_HOME ?? process.env.CUDA_PATH ?? '/usr/local/cuda';
  const split = (v) => (v ? v.split(':').filter(Boolean) : []);
  const cuda = [...split(process.env.DPO_CUDA_INCLUDE), join(cudaHome, 'include'), ...wheelIncludes];
  const ncclDirs = [...split(process.env.DPO_NCCL_INCLUDE), ...wheelIncludes, '/usr/include', join(cudaHome, 'include')];
  const runtime = found(cuda, 'cuda_runtime_api.h');
  if (!runtime) return { include: null, reason: 'no cuda_runtime_api.h (set DPO_CUDA_INCLUDE or CUDA_HOME)' };
  const ncclDir = found(ncclDirs, 'nccl.h');
  if (!ncclDir) return { include: null, reason: 'no nccl.h (set DPO_NCCL_INCLUDE)' };
  // every candidate that exists: CUDAContext.h also includes cuBLAS, cuSPARSE and cuSOLVER headers,
  // which the wheels keep in separate packages
  const dirs = [...new Set([ncclDir, runtime, ...cuda.filter((d) => existsSync(d))])];
  return { include: dirs, reason: 'found' };
}
