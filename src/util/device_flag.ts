// --device for every command that runs models: auto (cuda:<local rank> when CUDA is available, else
// the CPU), cpu, cuda or cuda:N; a CUDA device that does not exist, or CUDA asked for where there
// is none, is an error naming the flag, never a silent fall back to the CPU.
import type { Device } from '../torch/device.js';
import { FlagError } from './flags.js';

export const DEVICE_FLAG_HELP = 'auto (cuda:<local_rank> when CUDA is available, else cpu), cpu, cuda or cuda:N.';

/** `localRank` -1: no rank (cuda:0 under auto). */
export function resolveDeviceFlag(flag: string, localRank: number, cudaDevices: number): Device {
  if (flag === 'cpu') {
    if (localRank > 0) throw new FlagError(`--local_rank ${localRank} selects a CUDA device, but this run is on the CPU (--device cpu)`);
    return 'cpu';
  }
  const m = /^cuda(?::(\d+))?$/.exec(flag);
  if (flag !== 'auto' && !m) throw new FlagError(`--device must be auto, cpu, cuda or cuda:N; got '${flag}'`);
  if (cudaDevices === 0) {
    if (flag !== 'auto') throw new FlagError(`--device ${flag}: CUDA is not available to this libtorch (diffusion-dpo doctor says why)`);
    if (localRank > 0) throw new FlagError(`--local_rank ${localRank} selects a CUDA device, but CUDA is not available: this run would train on the CPU`);
    return 'cpu';
  }
  const index = m?.[1] !== undefined ? Number(m[1]) : Math.max(0, localRank);
  if (index >= cudaDevices) throw new FlagError(`CUDA device ${index} does not exist (${cudaDevices} visible)`);
  return `cuda:${index}`;
}
