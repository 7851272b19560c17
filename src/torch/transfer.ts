// Host -> device copies that do not make the host wait: the source is staged in pinned (page-locked)
// memory and copied with a non-blocking copy queued on the device's stream, as PyTorch's
// DataLoader(pin_memory=True) + .to(device, non_blocking=True) does. The pinned block comes from
// libtorch's caching host allocator, which keeps it from reuse until the queued copy has run, so
// the staging tensor may be freed at once.
import { deviceType, type Device } from './device.js';
import type { Tensor } from './tensor.js';

/** `t` (on the host) on `device`: a new tensor on a CUDA device, `t` itself on the CPU. */
export function toDeviceNonBlocking(t: Tensor, device: Device): Tensor {
  if (deviceType(device) !== 'cuda') return t;
  const pinned = t.isPinned() ? t : t.pinMemory();
  try {
    return pinned.to({ device, nonBlocking: true });
  } finally {
    if (pinned !== t) pinned.dispose();
  }
}
