// Process-wide settings and facts: threads, CUDA queries, TF32, determinism, build information.
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { native, type BuildInfo, type SdpBackends } from './native.js';

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
  /** The device's name, total memory (bytes) and compute capability, from the CUDA driver. */
  deviceInfo(index?: number): { name: string; totalMemory: number; major: number; minor: number } {
    return native.cudaDeviceInfo(index);
  },
  /** Resolves when the device has finished its queued work; the wait runs off the JS thread. */
  synchronizeAsync(index?: number): Promise<void> {
    return native.cudaSynchronizeAsync(index);
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

export type { SdpBackends };
export const SDP_BACKENDS = ['flash', 'efficient', 'math', 'cudnn'] as const;

/**
 * Which kernels scaled_dot_product_attention may pick (torch.backends.cuda.enable_flash_sdp and
 * friends): sets those given, returns the enabled set. 'auto' is all of them.
 */
export function sdpBackends(set?: Partial<SdpBackends>): SdpBackends {
  return native.sdpBackends(set);
}

/** TF32, cuDNN benchmark and determinism as set now. */
export function mathSettings(): { tf32Matmul: boolean; tf32Cudnn: boolean; cudnnBenchmark: boolean; deterministic: boolean } {
  return native.mathSettings();
}

/**
 * Why CUDA might be expected here although libtorch reports none: a CUDA build of libtorch, or an
 * NVIDIA device node. null when neither is there (a CPU machine with a CPU libtorch).
 */
export function cudaExpectedButMissing(): string | null {
  if (cuda.isAvailable()) return null;
  const reasons: string[] = [];
  if (existsSync(join(buildInfo().torchLibDir, 'libtorch_cuda.so'))) reasons.push('this libtorch is a CUDA build');
  if (existsSync('/dev/nvidia0') || existsSync('/dev/nvidiactl')) reasons.push('an NVIDIA device node exists (/dev/nvidia*)');
  return reasons.length ? `${reasons.join(' and ')}, but CUDA is not available (a driver older than the libtorch's CUDA, or no GPU visible to this process)` : null;
}

/**
 * A line naming a device for logs: `cpu (16 threads)`, or `cuda:0 (NVIDIA H200, 139.8 GiB,
 * compute capability 9.0)`; when the driver cannot be asked, the reason instead of the name.
 */
export function describeDevice(device: string): string {
  if (!device.startsWith('cuda')) return `${device} (${getNumThreads()} threads)`;
  const index = Number(device.split(':')[1] ?? 0);
  try {
    const d = cuda.deviceInfo(index);
    return `cuda:${index} (${d.name}, ${(d.totalMemory / 2 ** 30).toFixed(1)} GiB, compute capability ${d.major}.${d.minor})`;
  } catch (e) {
    return `cuda:${index} (not described: ${(e as Error).message})`;
  }
}

/**
 * Ends the process at once with `code`, without process.exit()'s wait for libuv's worker threads
 * (one may be blocked in a collective or a device wait until its timeout). Output written so far
 * to files, pipes and terminals is kept (Node writes them synchronously on Linux).
 */
export function exitNow(code: number): never {
  return native.exitNow(code);
}
