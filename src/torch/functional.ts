// torch.nn.functional, camelCased. Each function calls the aten operator that PyTorch's Python
// function ends up calling, with the same defaults, so results match bit for bit on CPU.
import { native } from './native.js';
import { OP } from './ops.js';
import { Tensor, wrap } from './tensor.js';

const call = native.callOp;
const h = (t: Tensor | null | undefined) => (t ? t._h : null);
const pair = (v: number | [number, number]) => (typeof v === 'number' ? [v, v] : v);

export function linear(input: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return wrap(call(OP.linear, input._h, weight._h, h(bias)));
}

export interface Conv2dOptions {
  stride?: number | [number, number];
  /** Numbers, or 'same' / 'valid' as in PyTorch. */
  padding?: number | [number, number] | 'same' | 'valid';
  dilation?: number | [number, number];
  groups?: number;
}
export function conv2d(input: Tensor, weight: Tensor, bias?: Tensor | null, o: Conv2dOptions = {}): Tensor {
  const stride = pair(o.stride ?? 1);
  const dilation = pair(o.dilation ?? 1);
  if (typeof o.padding === 'string') {
    return wrap(call(OP['conv2d.padding'], input._h, weight._h, h(bias), stride, o.padding, dilation, o.groups ?? 1));
  }
  return wrap(call(OP.conv2d, input._h, weight._h, h(bias), stride, pair(o.padding ?? 0), dilation, o.groups ?? 1));
}

export function groupNorm(input: Tensor, numGroups: number, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return wrap(call(OP.group_norm, input._h, numGroups, h(weight), h(bias), eps, true));
}

export function layerNorm(input: Tensor, normalizedShape: number[], weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return wrap(call(OP.layer_norm, input._h, normalizedShape, h(weight), h(bias), eps, true));
}

export function embedding(input: Tensor, weight: Tensor, paddingIdx?: number): Tensor {
  return wrap(call(OP.embedding, weight._h, input._h, paddingIdx ?? -1, false, false));
}

/** Uses the default generator of the input's device, as PyTorch does (dropout takes none). */
export function dropout(input: Tensor, p = 0.5, training = true): Tensor {
  if (p < 0 || p > 1) throw new RangeError(`dropout probability has to be between 0 and 1, but got ${p}`);
  return wrap(call(OP.dropout, input._h, p, training));
}

export interface InterpolateOptions {
  size?: number | [number, number];
  scaleFactor?: number | [number, number];
  mode?: 'nearest' | 'bilinear' | 'bicubic';
  alignCorners?: boolean;
  /** Anti-aliased downsampling (bilinear and bicubic only), as PIL resizes. */
  antialias?: boolean;
}
/**
 * F.interpolate for 4-d input. With scaleFactor (and no size) the scale is handed to the kernel,
 * as PyTorch does when recompute_scale_factor is unset, so outputs match exactly.
 */
export function interpolate(input: Tensor, o: InterpolateOptions): Tensor {
  const mode = o.mode ?? 'nearest';
  if ((o.size === undefined) === (o.scaleFactor === undefined)) throw new TypeError('interpolate: give exactly one of size and scaleFactor');
  if (input.ndim !== 4) throw new RangeError(`interpolate supports 4-d (N, C, H, W) input, got ${input.ndim}-d`);
  const size = o.size === undefined ? null : pair(o.size);
  const scales = o.scaleFactor === undefined ? null : pair(o.scaleFactor);
  if (mode === 'nearest') {
    if (o.alignCorners !== undefined) throw new TypeError("interpolate: alignCorners only applies to 'bilinear' and 'bicubic'");
    if (o.antialias) throw new TypeError("interpolate: antialias only applies to 'bilinear' and 'bicubic'");
    return wrap(call(OP['upsample_nearest2d.vec'], input._h, size, scales));
  }
  const align = o.alignCorners ?? false;
  if (mode === 'bilinear') {
    return wrap(call(o.antialias ? OP['_upsample_bilinear2d_aa.vec'] : OP['upsample_bilinear2d.vec'], input._h, size, align, scales));
  }
  if (mode === 'bicubic') {
    return wrap(call(o.antialias ? OP['_upsample_bicubic2d_aa.vec'] : OP['upsample_bicubic2d.vec'], input._h, size, align, scales));
  }
  throw new TypeError(`interpolate: unsupported mode '${String(mode)}'`);
}

export function avgPool2d(input: Tensor, kernelSize: number | [number, number], stride?: number | [number, number],
  padding: number | [number, number] = 0, o: { ceilMode?: boolean; countIncludePad?: boolean } = {}): Tensor {
  return wrap(call(OP.avg_pool2d, input._h, pair(kernelSize), stride === undefined ? [] : pair(stride), pair(padding),
    o.ceilMode ?? false, o.countIncludePad ?? true, null));
}

export function maxPool2d(input: Tensor, kernelSize: number | [number, number], stride?: number | [number, number],
  padding: number | [number, number] = 0): Tensor {
  return wrap(call(OP.max_pool2d, input._h, pair(kernelSize), stride === undefined ? [] : pair(stride), pair(padding), [1, 1], false));
}

export function adaptiveAvgPool2d(input: Tensor, outputSize: number | [number, number]): Tensor {
  return wrap(call(OP.adaptive_avg_pool2d, input._h, pair(outputSize)));
}

/** F.pad: `pad` lists (left, right) pairs from the last dimension backwards. */
export function pad(input: Tensor, padding: number[], mode: 'constant' | 'reflect' | 'replicate' | 'circular' = 'constant', value?: number): Tensor {
  return wrap(call(OP.pad, input._h, padding, mode, mode === 'constant' ? (value ?? 0) : null));
}

export function silu(x: Tensor): Tensor { return wrap(call(OP.silu, x._h)); }
export function relu(x: Tensor): Tensor { return wrap(call(OP.relu, x._h)); }
export function leakyRelu(x: Tensor, negativeSlope = 0.01): Tensor { return wrap(call(OP.leaky_relu, x._h, negativeSlope)); }
export function sigmoid(x: Tensor): Tensor { return wrap(call(OP.sigmoid, x._h)); }
export function tanh(x: Tensor): Tensor { return wrap(call(OP.tanh, x._h)); }
/** GELU, exact (erf) by default; approximate 'tanh' as in GELU(approximate='tanh'). */
export function gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor { return wrap(call(OP.gelu, x._h, approximate)); }
/** x * sigmoid(1.702 x): CLIP's quick_gelu (transformers' QuickGELUActivation). */
export function quickGelu(x: Tensor): Tensor {
  const scaled = x.mul(1.702);
  const gate = scaled.sigmoid();
  const out = x.mul(gate);
  scaled.dispose();
  gate.dispose();
  return out;
}
export function softplus(x: Tensor, beta = 1, threshold = 20): Tensor { return wrap(call(OP.softplus, x._h, beta, threshold)); }
export function softmax(x: Tensor, dim: number): Tensor { return wrap(call(OP['softmax.int'], x._h, dim, null)); }
export function logSoftmax(x: Tensor, dim: number): Tensor { return wrap(call(OP['log_softmax.int'], x._h, dim, null)); }
export function logSigmoid(x: Tensor): Tensor { return wrap(call(OP.log_sigmoid, x._h)); }
export function normalize(x: Tensor, p = 2, dim = 1, eps = 1e-12): Tensor {
  const n = x.norm(p, dim, true);
  const d = n.clampMin(eps);
  const out = x.div(d);
  n.dispose();
  d.dispose();
  return out;
}
export function cosineSimilarity(a: Tensor, b: Tensor, dim = 1, eps = 1e-8): Tensor {
  return wrap(call(OP.cosine_similarity, a._h, b._h, dim, eps));
}

export type Reduction = 'none' | 'mean' | 'sum';
const REDUCTION: Record<Reduction, number> = { none: 0, mean: 1, sum: 2 };
function reduction(r: Reduction): number {
  const c = REDUCTION[r];
  if (c === undefined) throw new TypeError(`reduction must be 'none', 'mean' or 'sum', got '${String(r)}'`);
  return c;
}
export function mseLoss(input: Tensor, target: Tensor, r: Reduction = 'mean'): Tensor {
  return wrap(call(OP.mse_loss, input._h, target._h, reduction(r)));
}
export function l1Loss(input: Tensor, target: Tensor, r: Reduction = 'mean'): Tensor {
  return wrap(call(OP.l1_loss, input._h, target._h, reduction(r)));
}
export function smoothL1Loss(input: Tensor, target: Tensor, r: Reduction = 'mean', beta = 1): Tensor {
  return wrap(call(OP.smooth_l1_loss, input._h, target._h, reduction(r), beta));
}
export function binaryCrossEntropyWithLogits(input: Tensor, target: Tensor, r: Reduction = 'mean'): Tensor {
  return wrap(call(OP.binary_cross_entropy_with_logits, input._h, target._h, null, null, reduction(r)));
}
export function crossEntropy(input: Tensor, target: Tensor, r: Reduction = 'mean', labelSmoothing = 0): Tensor {
  return wrap(call(OP.cross_entropy_loss, input._h, target._h, null, reduction(r), -100, labelSmoothing));
}

export interface SdpaOptions {
  attnMask?: Tensor | null;
  dropoutP?: number;
  isCausal?: boolean;
  /** Defaults to 1/sqrt(head dim). */
  scale?: number;
}
/** libtorch's own scaled_dot_product_attention (flash / memory-efficient / math kernels). */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, o: SdpaOptions = {}): Tensor {
  return wrap(call(OP.scaled_dot_product_attention, q._h, k._h, v._h, h(o.attnMask), o.dropoutP ?? 0, o.isCausal ?? false, o.scale ?? null));
}

export function pixelShuffle(x: Tensor, upscaleFactor: number): Tensor {
  return wrap(call(OP.pixel_shuffle, x._h, upscaleFactor));
}
