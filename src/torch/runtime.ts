// Process-wide settings and facts: threads, CUDA queries, TF32, determinism, build information.
import { availableParallelism } from 'node:os';
import { native, type BuildInfo } from './native.js';

export function setNumThreads(n: number): void {
  native.setNumThreads(n);
}
export function getNumThreads(): number {
  return native.getNumThreads();
}

/** libtorch starts at one intra-op thread inside Node; use every core unless told otherwise. */
function initThreads(): void {
  const env = process.env.DPO_NUM_THREADS ?? process.env.OMP_NUM_THREADS;
  const n = env ? Number.parseInt(env, 10) : availableParallelism();
  if (Number.isFinite(n) && n > 0) native.setNumThreads(n);
}
initThreads();

export function buildInfo(): BuildInfo {
  return native.buildInfo();
}

export const cuda = {
  isAvailable(): boolean {
    return native.buildInfo().cudaAvailable;
  },
  deviceCount(): number {
    return native.buildInfo().cudaDeviceCount;
  },
  synchronize(index?: number): void {
    native.cudaSynchronize(index);
  },
  emptyCache(): void {
    native.cudaEmptyCache();
  },
  memory(index?: number): { allocated: number; reserved: number; peakAllocated: number; peakReserved: number } {
    return native.cudaMemory(index);
  },
  resetPeakMemoryStats(index?: number): void {
    native.cudaResetPeak(index);
  },
};

/** torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32 together. */
export function setAllowTF32(allow: boolean): void {
  native.setAllowTF32(allow);
}
export function useDeterministicAlgorithms(on: boolean): void {
  native.setDeterministic(on);
}
export function setCudnnBenchmark(on: boolean): void {
  native.setCudnnBenchmark(on);
}
