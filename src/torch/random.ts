// Random number generators: torch.Generator and the global seed. Saving and restoring generator
// state is what makes resumed training runs bit-identical to uninterrupted ones.
import { deviceType, type Device } from './device.js';
import { native, type NativeGenerator } from './native.js';
import { Tensor, wrap } from './tensor.js';

export class Generator {
  /** @internal */
  readonly native: NativeGenerator;

  /** A new generator of its own for `device` (torch.Generator(device)), optionally seeded. */
  constructor(device: Device = 'cpu', seed?: number | bigint) {
    this.native = native.generatorNew(device, seed);
  }

  /** @internal wraps an existing native generator (the default ones). */
  static fromNative(g: NativeGenerator): Generator {
    const gen = Object.create(Generator.prototype) as { native: NativeGenerator };
    gen.native = g;
    return gen as Generator;
  }

  get device(): Device {
    return native.generatorDevice(this.native);
  }
  manualSeed(seed: number | bigint): this {
    native.generatorManualSeed(this.native, seed);
    return this;
  }
  initialSeed(): number | bigint {
    return native.generatorInitialSeed(this.native);
  }
  /** The full state as a uint8 CPU tensor (torch.Generator.get_state()). */
  getState(): Tensor {
    return wrap(native.generatorGetState(this.native));
  }
  setState(state: Tensor): this {
    native.generatorSetState(this.native, state._h);
    return this;
  }
}

/** The default generator of a device (what ops use when given none). */
export function defaultGenerator(device: Device = 'cpu'): Generator {
  return Generator.fromNative(native.generatorDefault(deviceType(device) === 'cuda' && !device.includes(':') ? 'cuda:0' : device));
}

/** torch.manual_seed: seeds the default CPU generator and those of all CUDA devices. */
export function manualSeed(seed: number | bigint): void {
  native.manualSeed(seed);
}
