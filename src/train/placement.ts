// Where the frozen models (VAE, text encoders, reference UNet) live between their calls.
//   resident  on the training device, always (the default; fastest).
//   offload   in host memory; each is copied to the device for its call and the copy dropped after,
//             as train.py's accelerate.cpu_offload does for SDXL. Device memory then holds one
//             frozen model at a time instead of all of them, at the price of a host-to-device copy
//             of its weights per call (from pinned memory when CUDA is there, so the copy is fast
//             and asynchronous).
// Nothing is copied back: the host tensors are the masters, and a parameter's data is pointed at
// the device copy during the call and back at its host tensor after (PyTorch's `p.data = ...`).
import * as torch from '../torch/index.js';

export interface FrozenPlacement {
  readonly kind: 'resident' | 'offload';
  /** Runs fn with the module's weights on the compute device; fn gets that device. */
  run<T>(module: torch.nn.Module, fn: (device: torch.Device) => T): T;
  /** The same for several modules used together (SDXL's two text encoders). */
  runAll<T>(modules: torch.nn.Module[], fn: (device: torch.Device) => T): T;
}

function moduleDevice(m: torch.nn.Module): torch.Device {
  return m.parameters()[0]?.device ?? 'cpu';
}

export const residentPlacement: FrozenPlacement = {
  kind: 'resident',
  run: (module, fn) => fn(moduleDevice(module)),
  runAll: (modules, fn) => fn(modules[0] ? moduleDevice(modules[0]) : 'cpu'),
};

/** Frozen models kept in host memory and brought to `device` per call. */
export class OffloadPlacement implements FrozenPlacement {
  readonly kind = 'offload';
  /** The host master of every parameter and buffer of the modules placed so far. */
  readonly #host = new Map<torch.Tensor, torch.Tensor>();

  constructor(readonly device: torch.Device) {}

  /** Moves a module's tensors to host memory (pinned when CUDA is available) and keeps them as masters. */
  place(module: torch.nn.Module): void {
    const pin = torch.cuda.isAvailable();
    torch.noGrad(() => {
      for (const t of [...module.parameters(), ...module.buffers()]) {
        if (this.#host.has(t)) continue;
        const host = torch.tidy(() => {
          const h = t.to({ device: 'cpu', copy: true });
          return pin ? h.pinMemory() : h;
        }).keep();
        t.setData_(host);
        this.#host.set(t, host);
      }
    });
  }

  run<T>(module: torch.nn.Module, fn: (device: torch.Device) => T): T {
    return this.runAll([module], fn);
  }

  runAll<T>(modules: torch.nn.Module[], fn: (device: torch.Device) => T): T {
    const tensors = modules.flatMap((m) => [...m.parameters(), ...m.buffers()]);
    for (const t of tensors) if (!this.#host.has(t)) throw new Error('OffloadPlacement.run: place() the module first');
    torch.noGrad(() => torch.tidy(() => {
      for (const t of tensors) t.setData_(this.#host.get(t)!.to({ device: this.device, copy: true, nonBlocking: true }));
    }));
    try {
      return fn(this.device);
    } finally {
      torch.noGrad(() => {
        for (const t of tensors) t.setData_(this.#host.get(t)!);
      });
    }
  }

  dispose(): void {
    for (const h of this.#host.values()) h.dispose();
    this.#host.clear();
  }
}
