// The Tensor class: a native handle plus PyTorch's tensor methods in camelCase. Every method
// returning a tensor returns a new handle owned by the current scope; in-place methods (name_)
// return `this`. Shapes are number[]; dtypes and devices are strings.
import { type DType, dtypeCode, dtypeFromCode, typedArrayFor, type TypedArrayMap, DTYPES } from './dtype.js';
import { checkDevice, type Device } from './device.js';
import { native, type Handle } from './native.js';
import { OP } from './ops.js';
import { adopt, keep, moveToOuterScope, type Scoped } from './scope.js';
import { runBackward, type BackwardOptions } from './backward_hooks.js';
import type { Generator } from './random.js';

const call = native.callOp;

/** c10::MemoryFormat codes. */
export const MEMORY_FORMAT = { contiguous: 0, preserve: 1, channelsLast: 2 } as const;
export type MemoryFormat = keyof typeof MEMORY_FORMAT;

export type Scalar = number | boolean;
export type TensorOrScalar = Tensor | Scalar;

export interface ToOptions {
  dtype?: DType;
  device?: Device;
  copy?: boolean;
  nonBlocking?: boolean;
  memoryFormat?: MemoryFormat;
}

const DTYPE_SET = new Set<string>(DTYPES);

/** Wraps a fresh native handle into a Tensor owned by the current scope. */
export function wrap(h: unknown): Tensor {
  return new Tensor(h as Handle);
}
function wrapList(hs: unknown): Tensor[] {
  return (hs as Handle[]).map((h) => new Tensor(h));
}

export class Tensor implements Scoped {
  /** @internal native handle; -1 once disposed. */
  _h: Handle;
  /** @internal owning scope id (0: none). */
  _scope = 0;
  #meta: [number, string, boolean, ...number[]] | undefined;

  /** @internal use the factories in torch.* instead. */
  constructor(handle: Handle) {
    this._h = handle;
    adopt(this);
  }

  // ------------------------------------------------------------------------- lifetime

  /** Frees the tensor now (idempotent). Views and autograd keep shared storage alive as needed. */
  dispose(): void {
    if (this._h >= 0) {
      native.dispose(this._h);
      this._h = -1;
    }
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
  get isDisposed(): boolean {
    return this._h < 0;
  }
  /** Exempts this tensor from every scope (it lives until dispose()). */
  keep(): this {
    return keep(this);
  }
  moveToOuterScope(): this {
    return moveToOuterScope(this);
  }

  // ------------------------------------------------------------------------- metadata

  private get meta(): [number, string, boolean, ...number[]] {
    return (this.#meta ??= native.meta(this._h));
  }
  /** @internal in-place ops that can change metadata call this. */
  _invalidate(): this {
    this.#meta = undefined;
    return this;
  }
  get shape(): number[] {
    return this.meta.slice(3) as number[];
  }
  get ndim(): number {
    return this.meta.length - 3;
  }
  get dtype(): DType {
    return dtypeFromCode(this.meta[0]);
  }
  get device(): Device {
    return this.meta[1];
  }
  get isCuda(): boolean {
    return this.meta[1].startsWith('cuda');
  }
  get requiresGrad(): boolean {
    return native.meta(this._h)[2];
  }
  get isLeaf(): boolean {
    return native.autogradInfo(this._h)[0];
  }
  /** Name of the autograd node that produced this tensor, or null for leaves. */
  get gradFn(): string | null {
    return native.autogradInfo(this._h)[1];
  }
  size(dim?: number): number | number[] {
    if (dim === undefined) return this.shape;
    const s = this.shape;
    const d = dim < 0 ? dim + s.length : dim;
    if (d < 0 || d >= s.length) throw new RangeError(`dim ${dim} out of range for a ${s.length}-d tensor`);
    return s[d]!;
  }
  numel(): number {
    let n = 1;
    for (const d of this.shape) n *= d;
    return n;
  }
  stride(): number[] {
    return native.strides(this._h);
  }
  isContiguous(memoryFormat: MemoryFormat = 'contiguous'): boolean {
    return call(OP['is_contiguous.memory_format'], this._h, MEMORY_FORMAT[memoryFormat]) as boolean;
  }
  isFloatingPoint(): boolean {
    const d = this.dtype;
    return d === 'float32' || d === 'float16' || d === 'bfloat16' || d === 'float64';
  }
  /** Whether two tensors share storage (a view or an alias of the other). */
  sharesStorageWith(other: Tensor): boolean {
    return native.sameStorage(this._h, other._h);
  }
  toString(): string {
    if (this._h < 0) return 'Tensor(disposed)';
    return `Tensor(shape=[${this.shape.join(', ')}], dtype=${this.dtype}, device=${this.device})`;
  }

  // ------------------------------------------------------------------------- host access

  /** The elements, row-major, in the dtype's typed array (float16/bfloat16 as raw Uint16 bits). */
  toTypedArray<D extends DType = DType>(): TypedArrayMap[D] {
    return typedArrayFor(this.dtype as D, native.toBuffer(this._h));
  }
  /** The elements as plain numbers (float16/bfloat16 converted; int64 as numbers). */
  toArray(): number[] {
    const d = this.dtype;
    const src = d === 'float16' || d === 'bfloat16' ? this.to('float32') : this;
    const arr = src.toTypedArray();
    if (src !== this) src.dispose();
    return Array.from(arr as ArrayLike<number | bigint>, Number);
  }
  /** The value of a one-element tensor (a host sync on CUDA). */
  item(): number {
    const v = native.item(this._h);
    return typeof v === 'boolean' ? Number(v) : Number(v);
  }

  // ------------------------------------------------------------------------- conversion

  to(dtype: DType): Tensor;
  to(device: Device): Tensor;
  to(options: ToOptions): Tensor;
  to(arg: DType | Device | ToOptions): Tensor {
    const o: ToOptions = typeof arg === 'string' ? (DTYPE_SET.has(arg) ? { dtype: arg as DType } : { device: checkDevice(arg) }) : arg;
    return wrap(call(OP['to.dtype_layout'], this._h, o.dtype === undefined ? null : dtypeCode(o.dtype), null,
      o.device ?? null, null, o.nonBlocking ?? false, o.copy ?? false,
      o.memoryFormat === undefined ? null : MEMORY_FORMAT[o.memoryFormat]));
  }
  float(): Tensor { return this.to('float32'); }
  half(): Tensor { return this.to('float16'); }
  bfloat16(): Tensor { return this.to('bfloat16'); }
  double(): Tensor { return this.to('float64'); }
  long(): Tensor { return this.to('int64'); }
  int(): Tensor { return this.to('int32'); }
  bool(): Tensor { return this.to('bool'); }
  cpu(): Tensor { return this.to('cpu'); }
  cuda(index = 0): Tensor { return this.to(`cuda:${index}`); }
  clone(memoryFormat?: MemoryFormat): Tensor {
    return wrap(call(OP.clone, this._h, memoryFormat === undefined ? null : MEMORY_FORMAT[memoryFormat]));
  }
  detach(): Tensor { return wrap(call(OP.detach, this._h)); }
  /** A copy in page-locked host memory, so host-to-device copies from it can be asynchronous (needs CUDA). */
  pinMemory(): Tensor { return wrap(call(OP.pin_memory, this._h, null)); }
  isPinned(): boolean { return call(OP.is_pinned, this._h, null) as boolean; }
  contiguous(memoryFormat: MemoryFormat = 'contiguous'): Tensor {
    return wrap(call(OP.contiguous, this._h, MEMORY_FORMAT[memoryFormat]));
  }

  // ------------------------------------------------------------------------- autograd

  requiresGrad_(requiresGrad = true): this {
    native.setRequiresGrad(this._h, requiresGrad);
    this.#meta = undefined;
    return this;
  }
  /** The accumulated gradient (a fresh handle in the current scope), or null. */
  get grad(): Tensor | null {
    const g = native.getGrad(this._h);
    return g === null ? null : new Tensor(g);
  }
  set grad(g: Tensor | null) {
    native.setGrad(this._h, g === null ? null : g._h);
  }
  /** Accumulates gradients into the leaves; checkpointed segments recorded before it are replayed too. */
  backward(gradient?: Tensor, options: BackwardOptions = {}): void {
    runBackward(() => native.backward([this._h], gradient ? [gradient._h] : null, options.retainGraph, options.createGraph), options);
  }
  retainGrad(): this {
    native.retainGrad(this._h);
    return this;
  }

  // ------------------------------------------------------------------------- views and joins

  reshape(...shape: number[] | [number[]]): Tensor { return wrap(call(OP.reshape, this._h, flat(shape))); }
  view(...shape: number[] | [number[]]): Tensor { return wrap(call(OP.view, this._h, flat(shape))); }
  permute(...dims: number[] | [number[]]): Tensor { return wrap(call(OP.permute, this._h, flat(dims))); }
  transpose(dim0: number, dim1: number): Tensor { return wrap(call(OP['transpose.int'], this._h, dim0, dim1)); }
  t(): Tensor { return wrap(call(OP.t, this._h)); }
  flatten(startDim = 0, endDim = -1): Tensor { return wrap(call(OP['flatten.using_ints'], this._h, startDim, endDim)); }
  unflatten(dim: number, sizes: number[]): Tensor { return wrap(call(OP['unflatten.int'], this._h, dim, sizes)); }
  squeeze(dim?: number): Tensor {
    return wrap(dim === undefined ? call(OP.squeeze, this._h) : call(OP['squeeze.dim'], this._h, dim));
  }
  unsqueeze(dim: number): Tensor { return wrap(call(OP.unsqueeze, this._h, dim)); }
  expand(...shape: number[] | [number[]]): Tensor { return wrap(call(OP.expand, this._h, flat(shape))); }
  expandAs(other: Tensor): Tensor { return wrap(call(OP.expand_as, this._h, other._h)); }
  repeat(...repeats: number[] | [number[]]): Tensor { return wrap(call(OP.repeat, this._h, flat(repeats))); }
  tile(dims: number[]): Tensor { return wrap(call(OP.tile, this._h, dims)); }
  repeatInterleave(repeats: number, dim?: number): Tensor {
    return wrap(call(OP['repeat_interleave.self_int'], this._h, repeats, dim ?? null));
  }
  chunk(chunks: number, dim = 0): Tensor[] { return wrapList(call(OP.chunk, this._h, chunks, dim)); }
  split(splitSize: number | number[], dim = 0): Tensor[] {
    return wrapList(typeof splitSize === 'number'
      ? call(OP['split.Tensor'], this._h, splitSize, dim)
      : call(OP.split_with_sizes, this._h, splitSize, dim));
  }
  unbind(dim = 0): Tensor[] { return wrapList(call(OP['unbind.int'], this._h, dim)); }
  narrow(dim: number, start: number, length: number): Tensor { return wrap(call(OP.narrow, this._h, dim, start, length)); }
  select(dim: number, index: number): Tensor { return wrap(call(OP['select.int'], this._h, dim, index)); }
  /** x[start:end:step] along dim (Python slice semantics; null = open end). */
  slice(dim: number, start: number | null = null, end: number | null = null, step = 1): Tensor {
    return wrap(call(OP['slice.Tensor'], this._h, dim, start, end, step));
  }
  /** Advanced indexing x[i0, i1, ...] with index tensors (null = full slice). */
  index(indices: (Tensor | null)[]): Tensor {
    return wrap(call(OP['index.Tensor'], this._h, indices.map((t) => (t ? t._h : null))));
  }
  indexSelect(dim: number, index: Tensor): Tensor { return wrap(call(OP.index_select, this._h, dim, index._h)); }
  gather(dim: number, index: Tensor): Tensor { return wrap(call(OP.gather, this._h, dim, index._h)); }
  flip(dims: number[]): Tensor { return wrap(call(OP.flip, this._h, dims)); }
  roll(shifts: number[], dims: number[]): Tensor { return wrap(call(OP.roll, this._h, shifts, dims)); }
  maskedFill(mask: Tensor, value: number): Tensor { return wrap(call(OP['masked_fill.Scalar'], this._h, mask._h, value)); }
  tril(diagonal = 0): Tensor { return wrap(call(OP.tril, this._h, diagonal)); }
  triu(diagonal = 0): Tensor { return wrap(call(OP.triu, this._h, diagonal)); }

  // ------------------------------------------------------------------------- arithmetic

  add(other: TensorOrScalar, alpha: number = 1): Tensor {
    return wrap(other instanceof Tensor ? call(OP['add.Tensor'], this._h, other._h, alpha) : call(OP['add.Scalar'], this._h, other, alpha));
  }
  sub(other: TensorOrScalar, alpha: number = 1): Tensor {
    return wrap(other instanceof Tensor ? call(OP['sub.Tensor'], this._h, other._h, alpha) : call(OP['sub.Scalar'], this._h, other, alpha));
  }
  /** other - this (Python's `scalar - tensor`). */
  rsub(other: Scalar): Tensor { return wrap(call(OP['rsub.Scalar'], this._h, other)); }
  mul(other: TensorOrScalar): Tensor {
    return wrap(other instanceof Tensor ? call(OP['mul.Tensor'], this._h, other._h) : call(OP['mul.Scalar'], this._h, other));
  }
  div(other: TensorOrScalar, roundingMode?: 'trunc' | 'floor'): Tensor {
    if (roundingMode) {
      const o = other instanceof Tensor ? other : scalarLike(other, this);
      const r = wrap(call(OP['div.Tensor_mode'], this._h, o._h, roundingMode));
      if (o !== other) o.dispose();
      return r;
    }
    return wrap(other instanceof Tensor ? call(OP['div.Tensor'], this._h, other._h) : call(OP['div.Scalar'], this._h, other));
  }
  remainder(other: TensorOrScalar): Tensor {
    return wrap(other instanceof Tensor ? call(OP['remainder.Tensor'], this._h, other._h) : call(OP['remainder.Scalar'], this._h, other));
  }
  pow(exponent: TensorOrScalar): Tensor {
    return wrap(exponent instanceof Tensor ? call(OP['pow.Tensor_Tensor'], this._h, exponent._h) : call(OP['pow.Tensor_Scalar'], this._h, exponent));
  }
  neg(): Tensor { return wrap(call(OP.neg, this._h)); }
  abs(): Tensor { return wrap(call(OP.abs, this._h)); }
  sqrt(): Tensor { return wrap(call(OP.sqrt, this._h)); }
  rsqrt(): Tensor { return wrap(call(OP.rsqrt, this._h)); }
  exp(): Tensor { return wrap(call(OP.exp, this._h)); }
  log(): Tensor { return wrap(call(OP.log, this._h)); }
  log1p(): Tensor { return wrap(call(OP.log1p, this._h)); }
  expm1(): Tensor { return wrap(call(OP.expm1, this._h)); }
  sin(): Tensor { return wrap(call(OP.sin, this._h)); }
  cos(): Tensor { return wrap(call(OP.cos, this._h)); }
  tanh(): Tensor { return wrap(call(OP.tanh, this._h)); }
  erf(): Tensor { return wrap(call(OP.erf, this._h)); }
  sigmoid(): Tensor { return wrap(call(OP.sigmoid, this._h)); }
  reciprocal(): Tensor { return wrap(call(OP.reciprocal, this._h)); }
  square(): Tensor { return wrap(call(OP.square, this._h)); }
  floor(): Tensor { return wrap(call(OP.floor, this._h)); }
  ceil(): Tensor { return wrap(call(OP.ceil, this._h)); }
  round(): Tensor { return wrap(call(OP.round, this._h)); }
  sign(): Tensor { return wrap(call(OP.sign, this._h)); }
  clamp(min: number | null = null, max: number | null = null): Tensor { return wrap(call(OP.clamp, this._h, min, max)); }
  clampMin(min: number): Tensor { return wrap(call(OP.clamp_min, this._h, min)); }
  clampMax(max: number): Tensor { return wrap(call(OP.clamp_max, this._h, max)); }
  minimum(other: Tensor): Tensor { return wrap(call(OP.minimum, this._h, other._h)); }
  maximum(other: Tensor): Tensor { return wrap(call(OP.maximum, this._h, other._h)); }
  lerp(end: Tensor, weight: TensorOrScalar): Tensor {
    return wrap(weight instanceof Tensor ? call(OP['lerp.Tensor'], this._h, end._h, weight._h) : call(OP['lerp.Scalar'], this._h, end._h, weight));
  }
  addcmul(t1: Tensor, t2: Tensor, value: number = 1): Tensor { return wrap(call(OP.addcmul, this._h, t1._h, t2._h, value)); }
  addcdiv(t1: Tensor, t2: Tensor, value: number = 1): Tensor { return wrap(call(OP.addcdiv, this._h, t1._h, t2._h, value)); }
  isnan(): Tensor { return wrap(call(OP.isnan, this._h)); }
  isinf(): Tensor { return wrap(call(OP.isinf, this._h)); }
  isfinite(): Tensor { return wrap(call(OP.isfinite, this._h)); }
  nanToNum(nan = 0, posinf: number | null = null, neginf: number | null = null): Tensor {
    return wrap(call(OP.nan_to_num, this._h, nan, posinf, neginf));
  }

  // comparisons (bool tensors)
  eq(o: TensorOrScalar): Tensor { return this.cmp(o, OP['eq.Tensor'], OP['eq.Scalar']); }
  ne(o: TensorOrScalar): Tensor { return this.cmp(o, OP['ne.Tensor'], OP['ne.Scalar']); }
  lt(o: TensorOrScalar): Tensor { return this.cmp(o, OP['lt.Tensor'], OP['lt.Scalar']); }
  le(o: TensorOrScalar): Tensor { return this.cmp(o, OP['le.Tensor'], OP['le.Scalar']); }
  gt(o: TensorOrScalar): Tensor { return this.cmp(o, OP['gt.Tensor'], OP['gt.Scalar']); }
  ge(o: TensorOrScalar): Tensor { return this.cmp(o, OP['ge.Tensor'], OP['ge.Scalar']); }
  private cmp(o: TensorOrScalar, tensorOp: number, scalarOp: number): Tensor {
    return wrap(o instanceof Tensor ? call(tensorOp, this._h, o._h) : call(scalarOp, this._h, o));
  }
  logicalNot(): Tensor { return wrap(call(OP.logical_not, this._h)); }
  logicalAnd(o: Tensor): Tensor { return wrap(call(OP.logical_and, this._h, o._h)); }
  logicalOr(o: Tensor): Tensor { return wrap(call(OP.logical_or, this._h, o._h)); }

  // ------------------------------------------------------------------------- in place

  add_(other: TensorOrScalar, alpha: number = 1): this {
    if (other instanceof Tensor) call(OP['add_.Tensor'], this._h, other._h, alpha);
    else call(OP['add_.Scalar'], this._h, other, alpha);
    return this;
  }
  sub_(other: TensorOrScalar, alpha: number = 1): this {
    if (other instanceof Tensor) call(OP['sub_.Tensor'], this._h, other._h, alpha);
    else call(OP['sub_.Scalar'], this._h, other, alpha);
    return this;
  }
  mul_(other: TensorOrScalar): this {
    if (other instanceof Tensor) call(OP['mul_.Tensor'], this._h, other._h);
    else call(OP['mul_.Scalar'], this._h, other);
    return this;
  }
  div_(other: TensorOrScalar): this {
    if (other instanceof Tensor) call(OP['div_.Tensor'], this._h, other._h);
    else call(OP['div_.Scalar'], this._h, other);
    return this;
  }
  addcmul_(t1: Tensor, t2: Tensor, value: number = 1): this { call(OP.addcmul_, this._h, t1._h, t2._h, value); return this; }
  addcdiv_(t1: Tensor, t2: Tensor, value: number = 1): this { call(OP.addcdiv_, this._h, t1._h, t2._h, value); return this; }
  lerp_(end: Tensor, weight: TensorOrScalar): this {
    if (weight instanceof Tensor) call(OP['lerp_.Tensor'], this._h, end._h, weight._h);
    else call(OP['lerp_.Scalar'], this._h, end._h, weight);
    return this;
  }
  clamp_(min: number | null = null, max: number | null = null): this { call(OP.clamp_, this._h, min, max); return this; }
  clampMin_(min: number): this { call(OP.clamp_min_, this._h, min); return this; }
  clampMax_(max: number): this { call(OP.clamp_max_, this._h, max); return this; }
  sqrt_(): this { call(OP.sqrt_, this._h); return this; }
  rsqrt_(): this { call(OP.rsqrt_, this._h); return this; }
  neg_(): this { call(OP.neg_, this._h); return this; }
  exp_(): this { call(OP.exp_, this._h); return this; }
  pow_(exponent: number): this { call(OP['pow_.Scalar'], this._h, exponent); return this; }
  sigmoid_(): this { call(OP.sigmoid_, this._h); return this; }
  copy_(src: Tensor, nonBlocking = false): this { call(OP.copy_, this._h, src._h, nonBlocking); return this; }
  zero_(): this { call(OP.zero_, this._h); return this; }
  fill_(value: Scalar): this { call(OP['fill_.Scalar'], this._h, value); return this; }
  maskedFill_(mask: Tensor, value: number): this { call(OP['masked_fill_.Scalar'], this._h, mask._h, value); return this; }
  normal_(mean = 0, std = 1, generator?: Generator): this {
    call(OP.normal_, this._h, mean, std, generator?.native ?? null);
    return this;
  }
  uniform_(from = 0, to = 1, generator?: Generator): this {
    call(OP.uniform_, this._h, from, to, generator?.native ?? null);
    return this;
  }
  /**
   * @internal Takes over `source`'s native tensor (source is left disposed), keeping this object:
   * how a module built on the 'meta' device receives its loaded weights (load_state_dict(assign=True)).
   */
  _moveFrom(source: Tensor): this {
    if (source === this) return this;
    if (source._h < 0) throw new Error('cannot move from a disposed tensor');
    if (this._h >= 0) native.dispose(this._h);
    this._h = source._h;
    source._h = -1;
    return this._invalidate();
  }

  /**
   * Makes this tensor hold `source`'s data, dtype and device while staying the same (leaf) tensor
   * object: what `param.data = source` does in PyTorch, and how Module.to converts in place.
   */
  setData_(source: Tensor): this {
    call(OP.set_data, this._h, source._h);
    return this._invalidate();
  }

  // ------------------------------------------------------------------------- reductions

  sum(dim?: number | number[], keepdim = false, dtype?: DType): Tensor {
    const code = dtype === undefined ? null : dtypeCode(dtype);
    return wrap(dim === undefined ? call(OP.sum, this._h, code) : call(OP['sum.dim_IntList'], this._h, arr(dim), keepdim, code));
  }
  mean(dim?: number | number[], keepdim = false, dtype?: DType): Tensor {
    const code = dtype === undefined ? null : dtypeCode(dtype);
    return wrap(dim === undefined ? call(OP.mean, this._h, code) : call(OP['mean.dim'], this._h, arr(dim), keepdim, code));
  }
  /** Variance with Bessel's correction by default (correction = 1), as torch.var. */
  var(dim?: number | number[] | null, options: { correction?: number; keepdim?: boolean } = {}): Tensor {
    return wrap(call(OP['var.correction'], this._h, dim == null ? null : arr(dim), options.correction ?? 1, options.keepdim ?? false));
  }
  std(dim?: number | number[] | null, options: { correction?: number; keepdim?: boolean } = {}): Tensor {
    return wrap(call(OP['std.correction'], this._h, dim == null ? null : arr(dim), options.correction ?? 1, options.keepdim ?? false));
  }
  /** Global max, or {values, indices} along dim. */
  max(): Tensor;
  max(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  max(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return wrap(call(OP.max, this._h));
    const [values, indices] = wrapList(call(OP['max.dim'], this._h, dim, keepdim));
    return { values: values!, indices: indices! };
  }
  min(): Tensor;
  min(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  min(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return wrap(call(OP.min, this._h));
    const [values, indices] = wrapList(call(OP['min.dim'], this._h, dim, keepdim));
    return { values: values!, indices: indices! };
  }
  amax(dim: number | number[] = [], keepdim = false): Tensor { return wrap(call(OP.amax, this._h, arr(dim), keepdim)); }
  amin(dim: number | number[] = [], keepdim = false): Tensor { return wrap(call(OP.amin, this._h, arr(dim), keepdim)); }
  argmax(dim?: number, keepdim = false): Tensor { return wrap(call(OP.argmax, this._h, dim ?? null, keepdim)); }
  argmin(dim?: number, keepdim = false): Tensor { return wrap(call(OP.argmin, this._h, dim ?? null, keepdim)); }
  /** Vector p-norm over dims (all by default), as torch.linalg.vector_norm / Tensor.norm. */
  norm(p = 2, dim?: number | number[], keepdim = false): Tensor {
    return wrap(call(OP.linalg_vector_norm, this._h, p, dim === undefined ? null : arr(dim), keepdim));
  }
  prod(): Tensor { return wrap(call(OP.prod, this._h)); }
  cumsum(dim: number): Tensor { return wrap(call(OP.cumsum, this._h, dim)); }
  cumprod(dim: number): Tensor { return wrap(call(OP.cumprod, this._h, dim)); }
  all(): Tensor { return wrap(call(OP.all, this._h)); }
  any(): Tensor { return wrap(call(OP.any, this._h)); }
  logsumexp(dim: number | number[], keepdim = false): Tensor { return wrap(call(OP.logsumexp, this._h, arr(dim), keepdim)); }
  topk(k: number, dim = -1, largest = true, sorted = true): { values: Tensor; indices: Tensor } {
    const [values, indices] = wrapList(call(OP.topk, this._h, k, dim, largest, sorted));
    return { values: values!, indices: indices! };
  }
  sort(dim = -1, descending = false): { values: Tensor; indices: Tensor } {
    const [values, indices] = wrapList(call(OP.sort, this._h, dim, descending));
    return { values: values!, indices: indices! };
  }
  argsort(dim = -1, descending = false): Tensor { return wrap(call(OP.argsort, this._h, dim, descending)); }

  // ------------------------------------------------------------------------- linear algebra

  matmul(other: Tensor): Tensor { return wrap(call(OP.matmul, this._h, other._h)); }
  mm(other: Tensor): Tensor { return wrap(call(OP.mm, this._h, other._h)); }
  bmm(other: Tensor): Tensor { return wrap(call(OP.bmm, this._h, other._h)); }
  /** beta * this + alpha * (batch1 @ batch2) */
  baddbmm(batch1: Tensor, batch2: Tensor, options: { beta?: number; alpha?: number } = {}): Tensor {
    return wrap(call(OP.baddbmm, this._h, batch1._h, batch2._h, options.beta ?? 1, options.alpha ?? 1));
  }
  outer(other: Tensor): Tensor { return wrap(call(OP.outer, this._h, other._h)); }
}

function flat(args: number[] | [number[]]): number[] {
  return Array.isArray(args[0]) ? (args[0] as number[]) : (args as number[]);
}
function arr(d: number | number[]): number[] {
  return typeof d === 'number' ? [d] : d;
}
function scalarLike(v: Scalar, like: Tensor): Tensor {
  return wrap(call(OP.full, [], v, dtypeCode(like.dtype), null, like.device, null));
}
