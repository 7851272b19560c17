// nn.Module: parameters, buffers and children in registration order, so that namedParameters()
// and stateDict() list keys exactly as PyTorch does and checkpoints load by name. Parameters and
// buffers live outside memory scopes (kept): they are freed by module.dispose().
import { noGrad } from '../autograd.js';
import type { DType } from '../dtype.js';
import type { Device } from '../device.js';
import { keep } from '../scope.js';
import { Tensor } from '../tensor.js';
import { UserError } from '../../util/errors.js';

export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

export class StateDictError extends UserError {
  constructor(
    readonly missingKeys: string[],
    readonly unexpectedKeys: string[],
    readonly mismatched: { key: string; expected: number[]; got: number[] }[],
    what = 'state dict',
  ) {
    const parts: string[] = [];
    const list = (keys: string[]) => keys.slice(0, 20).join(', ') + (keys.length > 20 ? `, ... (${keys.length} in all)` : '');
    if (missingKeys.length) parts.push(`missing keys: ${list(missingKeys)}`);
    if (unexpectedKeys.length) parts.push(`unexpected keys: ${list(unexpectedKeys)}`);
    if (mismatched.length) {
      parts.push('size mismatch: ' + mismatched.slice(0, 20)
        .map((m) => `${m.key} (checkpoint [${m.got.join(', ')}], model [${m.expected.join(', ')}])`).join(', ') +
        (mismatched.length > 20 ? `, ... (${mismatched.length} in all)` : ''));
    }
    super(`error loading ${what}: ${parts.join('; ')}`);
    this.name = 'StateDictError';
  }
}

export type StateDict = Map<string, Tensor>;

export class Module {
  training = true;
  readonly #params = new Map<string, Tensor | null>();
  readonly #buffers = new Map<string, { tensor: Tensor | null; persistent: boolean }>();
  readonly #children = new Map<string, Module>();

  /** Registers a parameter under `name` (its state-dict key segment); it requires grad and is kept. */
  registerParameter(name: string, t: Tensor): Tensor;
  registerParameter(name: string, t: null): null;
  registerParameter(name: string, t: Tensor | null): Tensor | null {
    this.#checkName(name);
    if (t) {
      keep(t);
      if (!t.requiresGrad) t.requiresGrad_(true);
    }
    this.#params.set(name, t);
    return t;
  }

  registerBuffer(name: string, t: Tensor | null, persistent = true): Tensor | null {
    this.#checkName(name);
    if (t) keep(t);
    this.#buffers.set(name, { tensor: t, persistent });
    return t;
  }

  registerModule<M extends Module>(name: string, m: M): M {
    this.#checkName(name);
    this.#children.set(name, m);
    return m;
  }

  #checkName(name: string): void {
    if (!name || name.includes('.')) throw new TypeError(`invalid module member name '${name}'`);
    if (this.#params.has(name) || this.#buffers.has(name) || this.#children.has(name)) {
      throw new Error(`'${name}' is already registered on ${this.constructor.name}`);
    }
  }

  /** Replaces a registered parameter's tensor (e.g. tying weights). The old one is not disposed. */
  setParameter(name: string, t: Tensor): void {
    if (!this.#params.has(name)) throw new Error(`${this.constructor.name} has no parameter '${name}'`);
    keep(t);
    this.#params.set(name, t);
  }

  *namedChildren(): IterableIterator<[string, Module]> {
    yield* this.#children;
  }
  children(): Module[] {
    return [...this.#children.values()];
  }

  /** This module and all below it, depth first, with dotted names ('' for this one). */
  *namedModules(prefix = ''): IterableIterator<[string, Module]> {
    yield [prefix, this];
    for (const [name, child] of this.#children) yield* child.namedModules(prefix ? `${prefix}.${name}` : name);
  }

  namedParameters(prefix = '', recurse = true): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    const modules = recurse ? this.namedModules(prefix) : [[prefix, this] as [string, Module]];
    for (const [modName, m] of modules) {
      for (const [name, p] of m.#params) {
        if (!p || seen.has(p)) continue; // shared parameters are listed once, as PyTorch does
        seen.add(p);
        out.push([modName ? `${modName}.${name}` : name, p]);
      }
    }
    return out;
  }
  parameters(recurse = true): Tensor[] {
    return this.namedParameters('', recurse).map(([, p]) => p);
  }

  namedBuffers(prefix = '', recurse = true): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const modules = recurse ? this.namedModules(prefix) : [[prefix, this] as [string, Module]];
    for (const [modName, m] of modules) {
      for (const [name, b] of m.#buffers) if (b.tensor) out.push([modName ? `${modName}.${name}` : name, b.tensor]);
    }
    return out;
  }
  buffers(recurse = true): Tensor[] {
    return this.namedBuffers('', recurse).map(([, b]) => b);
  }

  /** Parameters then persistent buffers of each module, module by module in registration order (PyTorch's order). */
  stateDict(prefix = ''): StateDict {
    const out: StateDict = new Map();
    for (const [modName, m] of this.namedModules(prefix)) {
      const key = (name: string) => (modName ? `${modName}.${name}` : name);
      for (const [name, p] of m.#params) if (p) out.set(key(name), p);
      for (const [name, b] of m.#buffers) if (b.tensor && b.persistent) out.set(key(name), b.tensor);
    }
    return out;
  }

  /**
   * Copies tensors into this module's parameters and buffers by key (converting dtype and device).
   * strict: any missing or unexpected key is an error; mis-shaped tensors always are. The error
   * lists every offending key. With `assign`, the module's tensors take over converted copies
   * instead of being written into (for modules built on the 'meta' device, which hold no memory);
   * `dtype` then applies to floating-point tensors and `device` to all.
   */
  loadStateDict(source: StateDict | Record<string, Tensor>, o: { strict?: boolean; what?: string; assign?: boolean; dtype?: DType; device?: Device } = {}): LoadResult {
    const strict = o.strict ?? true;
    const src = source instanceof Map ? source : new Map(Object.entries(source));
    const own = this.stateDict();
    const missingKeys = [...own.keys()].filter((k) => !src.has(k));
    const unexpectedKeys = [...src.keys()].filter((k) => !own.has(k));
    const mismatched: { key: string; expected: number[]; got: number[] }[] = [];
    for (const [key, target] of own) {
      const value = src.get(key);
      if (!value) continue;
      const a = target.shape;
      const b = value.shape;
      if (a.length !== b.length || a.some((d, i) => d !== b[i])) mismatched.push({ key, expected: a, got: b });
    }
    if (mismatched.length || (strict && (missingKeys.length || unexpectedKeys.length))) {
      throw new StateDictError(strict ? missingKeys : [], strict ? unexpectedKeys : [], mismatched, o.what);
    }
    const params = new Set(this.parameters());
    noGrad(() => {
      for (const [key, target] of own) {
        const value = src.get(key);
        if (!value) continue;
        if (!o.assign) {
          target.copy_(value);
          continue;
        }
        const floating = value.isFloatingPoint();
        const converted = value.to({ dtype: floating ? (o.dtype ?? target.dtype) : value.dtype, device: o.device ?? value.device, copy: true });
        target._moveFrom(converted);
        if (params.has(target)) target.requiresGrad_(true);
      }
    });
    return { missingKeys, unexpectedKeys };
  }

  /** Converts every parameter and buffer in place (the same Tensor objects keep working). */
  to(arg: DType | Device | { dtype?: DType; device?: Device }): this {
    const o = typeof arg === 'string' ? (isDType(arg) ? { dtype: arg } : { device: arg }) : arg;
    noGrad(() => {
      for (const t of [...this.parameters(), ...this.buffers()]) {
        // Only floating tensors change dtype (integer buffers such as position ids keep theirs).
        const dtype = o.dtype && t.isFloatingPoint() ? o.dtype : undefined;
        if ((dtype === undefined || dtype === t.dtype) && (o.device === undefined || o.device === t.device)) continue;
        const converted = t.to({ dtype, device: o.device });
        const g = t.grad;
        if (g) {
          t.grad = null;
          g.dispose();
        }
        t.setData_(converted);
        converted.dispose();
      }
    });
    return this;
  }

  /**
   * Keeps every 4-D parameter and buffer (convolution weights) in this memory format, in place:
   * channels-last lets cuDNN run NHWC convolution kernels (PyTorch's module.to(memory_format=...)).
   * Activations follow the weights' format through the convolutions.
   */
  toMemoryFormat(format: 'channelsLast' | 'contiguous'): this {
    noGrad(() => {
      for (const t of [...this.parameters(), ...this.buffers()]) {
        if (t.ndim !== 4 || t.isContiguous(format)) continue;
        const converted = t.contiguous(format);
        t.setData_(converted);
        converted.dispose();
      }
    });
    return this;
  }

  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }
  eval(): this {
    return this.train(false);
  }

  requiresGrad_(requiresGrad = true): this {
    for (const p of this.parameters()) p.requiresGrad_(requiresGrad);
    return this;
  }

  /** Sets every parameter's gradient to None (PyTorch's default set_to_none=True). */
  zeroGrad(): void {
    for (const p of this.parameters()) p.grad = null;
  }

  numParameters(onlyTrainable = false): number {
    let n = 0;
    for (const p of this.parameters()) if (!onlyTrainable || p.requiresGrad) n += p.numel();
    return n;
  }

  /** Frees all parameters and buffers of this module and its children. */
  dispose(): void {
    for (const [, m] of this.namedModules()) {
      for (const [name, p] of m.#params) {
        p?.dispose();
        m.#params.set(name, null);
      }
      for (const b of m.#buffers.values()) {
        b.tensor?.dispose();
        b.tensor = null;
      }
    }
  }
}

const DTYPE_NAMES = new Set(['float32', 'float16', 'bfloat16', 'float64', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool']);
function isDType(s: string): s is DType {
  return DTYPE_NAMES.has(s);
}
