// Low-rank adapters (LoRA, Hu et al. 2021, arXiv 2106.09685) on a module's Linear and Conv2d
// layers, as peft's LoraLayer computes them:
//   y = base(x) + (α / r) · up(down(dropout(x)))
// down: r × in (Linear) or an r-channel Conv2d with the base kernel, stride and padding; up: out × r
// (Linear) or a 1×1 Conv2d. peft initialises down Kaiming-uniform (a = √5, nn.Linear's default) and
// up to zero, so a fresh adapter leaves the model's function unchanged.
//
// The adapters are not registered children of the layers: the model's parameters and state dict
// stay the base model's (a base checkpoint still loads by name), and the adapters' own parameters
// are listed here under "<layer path>.down.weight" / ".up.weight". One switch turns every adapter
// of a set off, which gives the base model's prediction from the same weights (the reference of a
// preference objective) without a second copy of the model.
import { noGrad } from '../autograd.js';
import type { DType } from '../dtype.js';
import type { Device } from '../device.js';
import * as F from '../functional.js';
import type { Tensor } from '../tensor.js';
import { tidy } from '../scope.js';
import { zeros_ } from './init.js';
import { Conv2d, Linear, type LayerAdapter } from './layers.js';
import { Module } from './module.js';

export type AdaptableLayer = Linear | Conv2d;

export interface LoraSettings {
  rank: number;
  /** α; the adapter's output is scaled by α / rank. */
  alpha: number;
  /** Dropout on the adapter's input while training (peft's lora_dropout). */
  dropout: number;
}

interface Switch {
  enabled: boolean;
}

/** One layer's adapter: the down and up projections as a module (parameters down.weight, up.weight). */
export class LoraAdapter extends Module implements LayerAdapter {
  readonly down: Linear | Conv2d;
  readonly up: Linear | Conv2d;
  constructor(readonly layer: AdaptableLayer, readonly settings: LoraSettings, readonly toggle: Switch, o: { dtype?: DType; device?: Device } = {}) {
    super();
    const { rank } = settings;
    if (!Number.isInteger(rank) || rank < 1) throw new RangeError(`a LoRA rank must be a positive integer, got ${rank}`);
    const f = { dtype: o.dtype ?? layer.weight.dtype, device: o.device ?? layer.weight.device, bias: false };
    if (layer instanceof Linear) {
      this.down = this.registerModule('down', new Linear(layer.inFeatures, rank, f));
      this.up = this.registerModule('up', new Linear(rank, layer.outFeatures, f));
    } else {
      const { stride, padding, dilation, groups } = layer.options;
      if ((groups ?? 1) !== 1 || (dilation ?? 1) !== 1) throw new RangeError('LoRA on a grouped or dilated convolution is not supported');
      const [kh, kw] = layer.weight.shape.slice(2) as [number, number];
      this.down = this.registerModule('down', new Conv2d(layer.inChannels, rank, [kh, kw], { ...f, stride, padding }));
      this.up = this.registerModule('up', new Conv2d(rank, layer.outChannels, 1, f));
    }
    zeros_(this.up.weight);
  }

  get scale(): number {
    return this.settings.alpha / this.settings.rank;
  }

  get active(): boolean {
    return this.toggle.enabled;
  }

  /** (α / r) · up(down(dropout(x))), added to the base layer's output. */
  addTo(base: Tensor, x: Tensor): Tensor {
    const p = this.settings.dropout;
    const input = p > 0 && this.training ? F.dropout(x, p, true) : x;
    const h = this.down.forward(input);
    const delta = this.up.forward(h);
    h.dispose();
    if (input !== x) input.dispose();
    const scaled = this.scale === 1 ? delta : delta.mul(this.scale);
    if (scaled !== delta) delta.dispose();
    const out = base.add(scaled);
    base.dispose();
    scaled.dispose();
    return out;
  }

  /** The change this adapter makes to the layer's weight, scale · up ∘ down, in float32 (shape of the layer's weight). */
  deltaWeight(scale = 1): Tensor {
    return tidy(() => {
      const down = this.down.weight.detach().float();
      const up = this.up.weight.detach().float();
      const s = this.scale * scale;
      if (this.layer instanceof Linear) return up.matmul(down).mul(s);
      // a 1×1 up-projection composes with the down convolution: W[o, i, kh, kw] = Σ_r up[o, r] down[r, i, kh, kw]
      return up.flatten(1).matmul(down.flatten(1)).mul(s).reshape(this.layer.weight.shape);
    });
  }
}

/** Whether a dotted module path is selected by one of the patterns (see `matchesTarget`). */
export function matchesTarget(path: string, pattern: string): boolean {
  if (!pattern.includes('*')) return path === pattern || path.endsWith(`.${pattern}`);
  const re = new RegExp(`(^|\\.)${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(path);
}

export interface InjectOptions extends LoraSettings {
  /**
   * Which layers get adapters: each pattern selects the Linear and Conv2d layers whose dotted path
   * is the pattern or ends with "." + pattern (peft's target_modules); "*" matches any characters.
   */
  targets: readonly string[];
  /** The adapters' dtype (default float32: trained adapters keep full precision over a low-precision base). */
  dtype?: DType;
  device?: Device;
}

/** The adapters of one model, by layer path, with one switch for all of them. */
export class LoraAdapters {
  readonly #adapters = new Map<string, LoraAdapter>();
  readonly #switch: Switch = { enabled: true };

  /** Adds adapters to `root`'s layers matched by `targets`; a pattern that matches no Linear or Conv2d is an error. */
  static inject(root: Module, o: InjectOptions): LoraAdapters {
    const set = new LoraAdapters();
    const layers = [...root.namedModules()].filter(([path]) => path);
    for (const pattern of o.targets) {
      const hits = layers.filter(([path]) => matchesTarget(path, pattern));
      const adaptable = hits.filter(([, m]) => m instanceof Linear || m instanceof Conv2d);
      if (adaptable.length === 0) {
        const other = hits[0];
        throw new RangeError(`LoRA target '${pattern}' ${other ? `names a ${other[1].constructor.name} (${other[0]}), not a Linear or Conv2d layer` : 'matches no layer of the model'}`);
      }
      for (const [path, m] of adaptable) if (!set.#adapters.has(path)) set.add(path, m as AdaptableLayer, o, { dtype: o.dtype ?? 'float32', device: o.device });
    }
    return set;
  }

  /** Adds one adapter to `layer` (registered under `path`). */
  add(path: string, layer: AdaptableLayer, settings: LoraSettings, o: { dtype?: DType; device?: Device } = {}): LoraAdapter {
    if (layer.adapter) throw new Error(`${path} already has an adapter`);
    const adapter = new LoraAdapter(layer, settings, this.#switch, o);
    layer.adapter = adapter;
    this.#adapters.set(path, adapter);
    return adapter;
  }

  get size(): number {
    return this.#adapters.size;
  }

  entries(): IterableIterator<[string, LoraAdapter]> {
    return this.#adapters.entries();
  }

  /** "<layer path>.down.weight" and ".up.weight" of every adapter, in injection order. */
  namedParameters(): [string, Tensor][] {
    return [...this.#adapters].flatMap(([path, a]) => a.namedParameters(path));
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }

  numParameters(): number {
    return this.parameters().reduce((n, p) => n + p.numel(), 0);
  }

  /** Copies tensors named as namedParameters() lists them into the adapters; every key must match. */
  loadStateDict(source: Map<string, Tensor>, what = 'LoRA adapters'): void {
    const own = new Map(this.namedParameters());
    const missing = [...own.keys()].filter((k) => !source.has(k));
    const unexpected = [...source.keys()].filter((k) => !own.has(k));
    const mismatched = [...own].filter(([k, t]) => source.has(k) && source.get(k)!.shape.join() !== t.shape.join()).map(([k]) => k);
    if (missing.length || unexpected.length || mismatched.length) {
      const list = (ks: string[]) => ks.slice(0, 5).join(', ') + (ks.length > 5 ? `, ... (${ks.length})` : '');
      throw new RangeError(`${what}: ${[missing.length && `missing ${list(missing)}`, unexpected.length && `unexpected ${list(unexpected)}`, mismatched.length && `shapes differ for ${list(mismatched)}`].filter(Boolean).join('; ')}`);
    }
    noGrad(() => {
      for (const [k, t] of own) t.copy_(source.get(k)!);
    });
  }

  get enabled(): boolean {
    return this.#switch.enabled;
  }

  /** Runs fn with every adapter of the set switched off (the base model's function), then switches them back on. */
  disabled<T>(fn: () => T): T {
    const was = this.#switch.enabled;
    this.#switch.enabled = false;
    try {
      return fn();
    } finally {
      this.#switch.enabled = was;
    }
  }

  train(mode = true): this {
    for (const a of this.#adapters.values()) a.train(mode);
    return this;
  }

  requiresGrad_(on = true): this {
    for (const p of this.parameters()) p.requiresGrad_(on);
    return this;
  }

  /**
   * Folds every adapter into its layer's weight (W += scale · α/r · up·down, computed in float32 and
   * rounded once to the weight's dtype) and removes the adapters: the model then computes what it
   * computed with them, at the base model's cost.
   */
  mergeAndRemove(scale = 1): void {
    noGrad(() => {
      for (const a of this.#adapters.values()) {
        tidy(() => {
          const w = a.layer.weight;
          const merged = w.float().add(a.deltaWeight(scale)).to({ dtype: w.dtype });
          w.copy_(merged);
        });
      }
    });
    this.remove();
  }

  /** Detaches the adapters from their layers and frees them. */
  remove(): void {
    for (const a of this.#adapters.values()) {
      a.layer.adapter = null;
      a.dispose();
    }
    this.#adapters.clear();
  }

  to(o: { dtype?: DType; device?: Device }): this {
    for (const a of this.#adapters.values()) a.to(o);
    return this;
  }
}
