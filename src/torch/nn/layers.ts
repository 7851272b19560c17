// The layers the models are built from, with PyTorch's parameter names, shapes and default
// initialisation. forward() signatures are typed per layer (there is no untyped __call__).
import { empty, ones, zeros } from '../creation.js';
import type { DType } from '../dtype.js';
import type { Device } from '../device.js';
import * as F from '../functional.js';
import type { Tensor } from '../tensor.js';
import { defaultLayerInit_, normal_ } from './init.js';
import { Module } from './module.js';

export interface FactoryOptions {
  dtype?: DType;
  device?: Device;
}

/**
 * A low-rank adapter on a Linear or Conv2d (lora.ts): it adds to the layer's output and is no
 * registered child, so the layer's parameters and state dict stay the base model's.
 */
export interface LayerAdapter {
  /** false while adapters are switched off (e.g. for a reference prediction). */
  readonly active: boolean;
  /** base + the adapter's contribution for input x. */
  addTo(base: Tensor, x: Tensor): Tensor;
}

/** A module mapping one tensor to one tensor (what Sequential chains). */
export interface UnaryModule extends Module {
  forward(x: Tensor): Tensor;
}

export class Linear extends Module implements UnaryModule {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, o: FactoryOptions & { bias?: boolean } = {}) {
    super();
    this.weight = this.registerParameter('weight', empty([outFeatures, inFeatures], o));
    this.bias = o.bias === false ? this.registerParameter('bias', null) : this.registerParameter('bias', empty([outFeatures], o));
    defaultLayerInit_(this.weight, this.bias);
  }
  /** A LoRA adapter (lora.ts), or none. */
  adapter: LayerAdapter | null = null;
  forward(x: Tensor): Tensor {
    const y = F.linear(x, this.weight, this.bias);
    return this.adapter?.active ? this.adapter.addTo(y, x) : y;
  }
}

export interface Conv2dConfig extends FactoryOptions {
  stride?: number | [number, number];
  padding?: number | [number, number] | 'same' | 'valid';
  dilation?: number | [number, number];
  groups?: number;
  bias?: boolean;
}

export class Conv2d extends Module implements UnaryModule {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly options: F.Conv2dOptions;
  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: number | [number, number], o: Conv2dConfig = {}) {
    super();
    const [kh, kw] = typeof kernelSize === 'number' ? [kernelSize, kernelSize] : kernelSize;
    const groups = o.groups ?? 1;
    if (inChannels % groups || outChannels % groups) throw new RangeError(`in_channels and out_channels must be divisible by groups (${groups})`);
    this.weight = this.registerParameter('weight', empty([outChannels, inChannels / groups, kh, kw], o));
    this.bias = o.bias === false ? this.registerParameter('bias', null) : this.registerParameter('bias', empty([outChannels], o));
    defaultLayerInit_(this.weight, this.bias);
    this.options = { stride: o.stride ?? 1, padding: o.padding ?? 0, dilation: o.dilation ?? 1, groups };
  }
  /** A LoRA adapter (lora.ts), or none. */
  adapter: LayerAdapter | null = null;
  forward(x: Tensor): Tensor {
    const y = F.conv2d(x, this.weight, this.bias, this.options);
    return this.adapter?.active ? this.adapter.addTo(y, x) : y;
  }
}

export class GroupNorm extends Module implements UnaryModule {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  constructor(readonly numGroups: number, readonly numChannels: number, readonly eps = 1e-5, affine = true, o: FactoryOptions = {}) {
    super();
    if (numChannels % numGroups) throw new RangeError(`num_channels (${numChannels}) must be divisible by num_groups (${numGroups})`);
    this.weight = affine ? this.registerParameter('weight', ones([numChannels], o)) : null;
    this.bias = affine ? this.registerParameter('bias', zeros([numChannels], o)) : null;
  }
  forward(x: Tensor): Tensor {
    return F.groupNorm(x, this.numGroups, this.weight, this.bias, this.eps);
  }
}

export class LayerNorm extends Module implements UnaryModule {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly normalizedShape: number[];
  constructor(normalizedShape: number | number[], readonly eps = 1e-5, o: FactoryOptions & { elementwiseAffine?: boolean; bias?: boolean } = {}) {
    super();
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : normalizedShape;
    const affine = o.elementwiseAffine ?? true;
    this.weight = affine ? this.registerParameter('weight', ones(this.normalizedShape, o)) : null;
    this.bias = affine && o.bias !== false ? this.registerParameter('bias', zeros(this.normalizedShape, o)) : null;
  }
  forward(x: Tensor): Tensor {
    return F.layerNorm(x, this.normalizedShape, this.weight, this.bias, this.eps);
  }
}

export class Embedding extends Module implements UnaryModule {
  readonly weight: Tensor;
  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, o: FactoryOptions & { paddingIdx?: number } = {}) {
    super();
    this.weight = this.registerParameter('weight', empty([numEmbeddings, embeddingDim], o));
    normal_(this.weight);
    this.paddingIdx = o.paddingIdx;
  }
  readonly paddingIdx: number | undefined;
  forward(indices: Tensor): Tensor {
    return F.embedding(indices, this.weight, this.paddingIdx);
  }
}

export class Dropout extends Module implements UnaryModule {
  constructor(readonly p = 0.5) {
    super();
    if (p < 0 || p > 1) throw new RangeError(`dropout probability has to be between 0 and 1, but got ${p}`);
  }
  forward(x: Tensor): Tensor {
    return this.p === 0 || !this.training ? x.clone() : F.dropout(x, this.p, true);
  }
}

export class Identity extends Module implements UnaryModule {
  forward(x: Tensor): Tensor {
    return x.clone();
  }
}
export class SiLU extends Module implements UnaryModule {
  forward(x: Tensor): Tensor { return F.silu(x); }
}
export class ReLU extends Module implements UnaryModule {
  forward(x: Tensor): Tensor { return F.relu(x); }
}
export class Sigmoid extends Module implements UnaryModule {
  forward(x: Tensor): Tensor { return F.sigmoid(x); }
}
export class GELU extends Module implements UnaryModule {
  constructor(readonly approximate: 'none' | 'tanh' = 'none') {
    super();
  }
  forward(x: Tensor): Tensor { return F.gelu(x, this.approximate); }
}
export class QuickGELU extends Module implements UnaryModule {
  forward(x: Tensor): Tensor { return F.quickGelu(x); }
}

/** Children named "0", "1", ... as torch.nn.ModuleList. */
export class ModuleList<M extends Module = Module> extends Module implements Iterable<M> {
  readonly #items: M[] = [];
  constructor(modules: M[] = []) {
    super();
    for (const m of modules) this.append(m);
  }
  append(m: M): this {
    this.registerModule(String(this.#items.length), m);
    this.#items.push(m);
    return this;
  }
  get length(): number {
    return this.#items.length;
  }
  at(i: number): M {
    const m = this.#items.at(i);
    if (!m) throw new RangeError(`index ${i} out of range for a ModuleList of ${this.#items.length}`);
    return m;
  }
  [Symbol.iterator](): Iterator<M> {
    return this.#items[Symbol.iterator]();
  }
}

/** Runs its children in order; intermediate results are disposed as soon as the next one exists. */
export class Sequential extends ModuleList<UnaryModule> implements UnaryModule {
  constructor(...modules: UnaryModule[]) {
    super(modules);
  }
  forward(x: Tensor): Tensor {
    let out = x;
    for (const m of this) {
      const next = m.forward(out);
      if (out !== x) out.dispose();
      out = next;
    }
    return out === x ? x.clone() : out;
  }
}
