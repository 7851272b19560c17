// Tensor factories (torch.zeros, torch.randn(..., generator=g), torch.tensor(...), ...) and the
// functions that join tensors. dtype and device are always passed explicitly to libtorch: the
// defaults (float32, cpu) live here, never in libtorch's global state.
import { type AnyTypedArray, type DType, dtypeCode, dtypeOfTypedArray, ELEMENT_SIZE } from './dtype.js';
import type { Device } from './device.js';
import { native } from './native.js';
import { OP } from './ops.js';
import type { Generator } from './random.js';
import { MEMORY_FORMAT, type MemoryFormat, Tensor, wrap } from './tensor.js';

const call = native.callOp;

export interface TensorOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}
export interface RandomOptions extends TensorOptions {
  generator?: Generator;
}

function finish(t: Tensor, o: TensorOptions): Tensor {
  if (o.requiresGrad) t.requiresGrad_(true);
  return t;
}
const code = (o: TensorOptions, fallback: DType = 'float32') => dtypeCode(o.dtype ?? fallback);
const dev = (o: TensorOptions) => o.device ?? 'cpu';

export function zeros(shape: number[], o: TensorOptions = {}): Tensor {
  return finish(wrap(call(OP.zeros, shape, code(o), null, dev(o), null)), o);
}
export function ones(shape: number[], o: TensorOptions = {}): Tensor {
  return finish(wrap(call(OP.ones, shape, code(o), null, dev(o), null)), o);
}
export function full(shape: number[], value: number | boolean, o: TensorOptions = {}): Tensor {
  return finish(wrap(call(OP.full, shape, value, code(o), null, dev(o), null)), o);
}
/** Uninitialised memory (fill it before reading). */
export function empty(shape: number[], o: TensorOptions & { memoryFormat?: MemoryFormat } = {}): Tensor {
  return finish(wrap(call(OP['empty.memory_format'], shape, code(o), null, dev(o), null,
    o.memoryFormat === undefined ? null : MEMORY_FORMAT[o.memoryFormat])), o);
}
/** torch.arange(start, end, step): int64 when all bounds are integers, else float32, as PyTorch infers. */
export function arange(start: number, end?: number, step = 1, o: TensorOptions = {}): Tensor {
  if (end === undefined) [start, end] = [0, start];
  const integral = Number.isInteger(start) && Number.isInteger(end) && Number.isInteger(step);
  return finish(wrap(call(OP['arange.start_step'], start, end, step, code(o, integral ? 'int64' : 'float32'), null, dev(o), null)), o);
}
export function linspace(start: number, end: number, steps: number, o: TensorOptions = {}): Tensor {
  return finish(wrap(call(OP.linspace, start, end, steps, code(o), null, dev(o), null)), o);
}
export function eye(n: number, o: TensorOptions = {}): Tensor {
  return finish(wrap(call(OP.eye, n, code(o), null, dev(o), null)), o);
}
/** Uniform [0, 1). */
export function rand(shape: number[], o: RandomOptions = {}): Tensor {
  return finish(wrap(call(OP['rand.generator'], shape, o.generator?.native ?? null, code(o), null, dev(o), null)), o);
}
/** Standard normal. Same generator state, same numbers as PyTorch's torch.randn. */
export function randn(shape: number[], o: RandomOptions = {}): Tensor {
  return finish(wrap(call(OP['randn.generator'], shape, o.generator?.native ?? null, code(o), null, dev(o), null)), o);
}
/** Integers uniform in [low, high). */
export function randint(low: number, high: number, shape: number[], o: RandomOptions = {}): Tensor {
  return finish(wrap(call(OP['randint.low_generator'], low, high, shape, o.generator?.native ?? null, code(o, 'int64'), null, dev(o), null)), o);
}

type LikeOptions = { dtype?: DType; device?: Device };
const likeArgs = (o: LikeOptions) => [o.dtype === undefined ? null : dtypeCode(o.dtype), null, o.device ?? null, null] as const;
export function zerosLike(t: Tensor, o: LikeOptions = {}): Tensor { return wrap(call(OP.zeros_like, t._h, ...likeArgs(o), null)); }
export function onesLike(t: Tensor, o: LikeOptions = {}): Tensor { return wrap(call(OP.ones_like, t._h, ...likeArgs(o), null)); }
export function fullLike(t: Tensor, value: number, o: LikeOptions = {}): Tensor { return wrap(call(OP.full_like, t._h, value, ...likeArgs(o), null)); }
export function emptyLike(t: Tensor, o: LikeOptions = {}): Tensor { return wrap(call(OP.empty_like, t._h, ...likeArgs(o), null)); }
/** With a generator, draws exactly as randn(t.shape, {generator}) would; without, from the default generator. */
export function randnLike(t: Tensor, o: LikeOptions & { generator?: Generator } = {}): Tensor {
  if (o.generator) return randn(t.shape, { dtype: o.dtype ?? t.dtype, device: o.device ?? t.device, generator: o.generator });
  return wrap(call(OP.randn_like, t._h, ...likeArgs(o), null));
}
export function randLike(t: Tensor, o: LikeOptions & { generator?: Generator } = {}): Tensor {
  if (o.generator) return rand(t.shape, { dtype: o.dtype ?? t.dtype, device: o.device ?? t.device, generator: o.generator });
  return wrap(call(OP.rand_like, t._h, ...likeArgs(o), null));
}

type NestedNumbers = number | boolean | NestedNumbers[];

function flatten(data: NestedNumbers, shape: number[], out: number[], depth: number): void {
  if (Array.isArray(data)) {
    if (shape.length === depth) shape.push(data.length);
    else if (shape[depth] !== data.length) throw new RangeError(`ragged nested array: expected length ${shape[depth]} at depth ${depth}, got ${data.length}`);
    for (const d of data) flatten(d, shape, out, depth + 1);
  } else {
    if (depth !== shape.length) throw new RangeError('ragged nested array: a number where a list was expected');
    out.push(typeof data === 'boolean' ? Number(data) : data);
  }
}

/**
 * torch.tensor(data): from a number, nested arrays or a typed array (copied). JS numbers cannot
 * tell 1 from 1.0, so numbers give float32 unless a dtype is named (as tfjs does; PyTorch would
 * infer int64 from integer literals); booleans give bool; typed arrays keep their element type.
 */
export function tensor(data: NestedNumbers | AnyTypedArray, o: TensorOptions & { shape?: number[] } = {}): Tensor {
  if (ArrayBuffer.isView(data)) return fromTypedArray(data as AnyTypedArray, o.shape ?? [data.length], o);
  const shape: number[] = [];
  const values: number[] = [];
  flatten(data, shape, values, 0);
  // Values travel in the requested precision (float64 data must not be rounded through float32).
  const inferred: DType = isBoolData(data) ? 'bool' : o.dtype === 'int64' ? 'int64' : o.dtype === 'float64' ? 'float64' : 'float32';
  if (inferred === 'int64' && !values.every(Number.isSafeInteger)) throw new RangeError('tensor(): int64 data must be safe integers');
  const host: AnyTypedArray = inferred === 'int64' ? BigInt64Array.from(values, (v) => BigInt(v))
    : inferred === 'bool' ? Uint8Array.from(values)
      : inferred === 'float64' ? Float64Array.from(values) : Float32Array.from(values);
  let t = wrap(native.fromBuffer(host, dtypeCode(inferred), o.shape ?? shape));
  if ((o.dtype && o.dtype !== inferred) || (o.device && o.device !== 'cpu')) {
    const moved = t.to({ dtype: o.dtype ?? inferred, device: o.device ?? 'cpu' });
    t.dispose();
    t = moved;
  }
  return finish(t, o);
}
function isBoolData(d: NestedNumbers): boolean {
  return typeof d === 'boolean' || (Array.isArray(d) && d.length > 0 && isBoolData(d[0]!));
}

/** A tensor copied from a typed array (float16/bfloat16 from Uint16 bits when that dtype is named). */
export function fromTypedArray(data: ArrayBufferView, shape: number[], o: TensorOptions = {}): Tensor {
  const natural = data instanceof Uint16Array ? (o.dtype === 'float16' || o.dtype === 'bfloat16' ? o.dtype : 'int16') : dtypeOfTypedArray(data);
  const fromBits = natural === o.dtype && ELEMENT_SIZE[natural] === 2;
  let t = wrap(native.fromBuffer(data, dtypeCode(natural), shape));
  if ((o.dtype && !fromBits && o.dtype !== natural) || (o.device && o.device !== 'cpu')) {
    const moved = t.to({ dtype: o.dtype ?? natural, device: o.device ?? 'cpu' });
    t.dispose();
    t = moved;
  }
  return finish(t, o);
}

/** Raw little-endian bytes as a tensor of `dtype` and `shape` (copied). */
export function fromBytes(bytes: Uint8Array | Buffer, dtype: DType, shape: number[]): Tensor {
  return wrap(native.fromBuffer(bytes, dtypeCode(dtype), shape));
}

export function cat(tensors: Tensor[], dim = 0): Tensor {
  return wrap(call(OP.cat, tensors.map((t) => t._h), dim));
}
export function stack(tensors: Tensor[], dim = 0): Tensor {
  return wrap(call(OP.stack, tensors.map((t) => t._h), dim));
}
/** condition ? a : b, elementwise (either side may be a number). */
export function where(condition: Tensor, a: Tensor | number, b: Tensor | number): Tensor {
  if (a instanceof Tensor && b instanceof Tensor) return wrap(call(OP['where.self'], condition._h, a._h, b._h));
  if (a instanceof Tensor) return wrap(call(OP['where.ScalarOther'], condition._h, a._h, b));
  if (b instanceof Tensor) return wrap(call(OP['where.ScalarSelf'], condition._h, a, b._h));
  throw new TypeError('where(): at least one of a and b must be a tensor');
}
export function einsum(equation: string, ...tensors: Tensor[]): Tensor {
  return wrap(call(OP.einsum, equation, tensors.map((t) => t._h), null));
}
