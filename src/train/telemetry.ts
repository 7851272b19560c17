// Memory and speed per log window (one optimizer update): pairs per second, the share of the
// window spent waiting for the loader's next batch (the data pipeline not keeping up), the host's resident
// memory (now, and the process's peak so far) and, on CUDA, the peak memory allocated and
// reserved on the training device during the window (its peak counters are reset after each read).
import * as torch from '../torch/index.js';

const MB = 1024 * 1024;

export interface WindowStats {
  pairs_per_s: number;
  /** Time waiting for batches / window time. */
  data_wait_share: number;
  host_rss_mb: number;
  host_peak_rss_mb: number;
  cuda_peak_allocated_mb?: number;
  cuda_peak_reserved_mb?: number;
}

export interface ResourceSummary {
  /** Mean over the run's windows. */
  pairs_per_s: number;
  /** Mean over the run's windows after the first (which includes the loader's cold start); the first's when there is one. */
  data_wait_share: number;
  host_peak_rss_mb: number;
  cuda_peak_allocated_mb?: number;
  cuda_peak_reserved_mb?: number;
}

/** The process's peak resident set since it started (getrusage ru_maxrss, KiB on Linux). */
export function hostPeakRssMb(): number {
  return (process.resourceUsage().maxRSS * 1024) / MB;
}

export class ResourceMonitor {
  readonly #cudaIndex: number | null;
  #windows = 0;
  #pairsPerSecond = 0;
  #dataWaitShare = 0;
  #cudaPeakAllocated = 0;
  #cudaPeakReserved = 0;

  constructor(device: torch.Device) {
    this.#cudaIndex = torch.deviceType(device) === 'cuda' ? Number(device.split(':')[1] ?? 0) : null;
    if (this.#cudaIndex !== null) torch.cuda.resetPeakMemoryStats(this.#cudaIndex);
  }

  /** The device's memory now (for the start-of-run line), or null off CUDA. */
  deviceMemoryMb(): { allocated: number; reserved: number } | null {
    if (this.#cudaIndex === null) return null;
    const m = torch.cuda.memory(this.#cudaIndex);
    return { allocated: m.allocated / MB, reserved: m.reserved / MB };
  }

  /** Closes a window of `pairs` pairs that took `seconds`, `dataWaitSeconds` of them waiting for batches. */
  window(pairs: number, seconds: number, dataWaitSeconds: number): WindowStats {
    const pps = pairs / Math.max(seconds, 1e-9);
    const wait = Math.min(1, dataWaitSeconds / Math.max(seconds, 1e-9));
    this.#windows++;
    this.#pairsPerSecond += (pps - this.#pairsPerSecond) / this.#windows;
    this.#dataWaitShare = this.#windows <= 2 ? wait : this.#dataWaitShare + (wait - this.#dataWaitShare) / (this.#windows - 1);
    const out: WindowStats = { pairs_per_s: pps, data_wait_share: wait, host_rss_mb: process.memoryUsage().rss / MB, host_peak_rss_mb: hostPeakRssMb() };
    if (this.#cudaIndex !== null) {
      const m = torch.cuda.memory(this.#cudaIndex);
      out.cuda_peak_allocated_mb = m.peakAllocated / MB;
      out.cuda_peak_reserved_mb = m.peakReserved / MB;
      this.#cudaPeakAllocated = Math.max(this.#cudaPeakAllocated, out.cuda_peak_allocated_mb);
      this.#cudaPeakReserved = Math.max(this.#cudaPeakReserved, out.cuda_peak_reserved_mb);
      torch.cuda.resetPeakMemoryStats(this.#cudaIndex);
    }
    return out;
  }

  summary(): ResourceSummary {
    const out: ResourceSummary = { pairs_per_s: this.#pairsPerSecond, data_wait_share: this.#dataWaitShare, host_peak_rss_mb: hostPeakRssMb() };
    if (this.#cudaIndex !== null) {
      out.cuda_peak_allocated_mb = this.#cudaPeakAllocated;
      out.cuda_peak_reserved_mb = this.#cudaPeakReserved;
    }
    return out;
  }
}
