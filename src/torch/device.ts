// Devices are strings as in PyTorch: 'cpu', 'cuda', 'cuda:1'. libtorch parses and validates them.
export type Device = 'cpu' | 'cuda' | `cuda:${number}` | (string & {});

const DEVICE_RE = /^(cpu|cuda|meta)(:\d+)?$/;

export function checkDevice(d: string): Device {
  if (!DEVICE_RE.test(d)) throw new TypeError(`invalid device '${d}' (expected 'cpu', 'cuda' or 'cuda:N')`);
  return d;
}

/** The device type without the index: 'cuda:1' -> 'cuda'. */
export function deviceType(d: string): 'cpu' | 'cuda' | 'meta' {
  return d.split(':')[0] as 'cpu' | 'cuda' | 'meta';
}
