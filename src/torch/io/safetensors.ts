// safetensors (https://github.com/huggingface/safetensors): an 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}, then
// the raw little-endian data. Reading is memory-mapped and lazy per tensor; every malformed file
// gets an error that names the file and the problem. Writing is atomic (temp file + rename).
import { closeSync, openSync, readSync, fstatSync, renameSync, rmSync } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { type DType, dtypeCode, ELEMENT_SIZE } from '../dtype.js';
import type { Device } from '../device.js';
import { native, type Mapping } from '../native.js';
import { tidy } from '../scope.js';
import { Tensor, wrap } from '../tensor.js';
import { UserError } from '../../util/errors.js';

export class SafetensorsError extends UserError {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'SafetensorsError';
  }
}

/** safetensors dtype names <-> ours. */
const FROM_ST: Record<string, DType> = {
  F32: 'float32', F16: 'float16', BF16: 'bfloat16', F64: 'float64', I64: 'int64', I32: 'int32', I16: 'int16',
  I8: 'int8', U8: 'uint8', BOOL: 'bool',
};
const TO_ST: Record<DType, string> = Object.fromEntries(Object.entries(FROM_ST).map(([k, v]) => [v, k])) as Record<DType, string>;

export interface TensorInfo {
  name: string;
  dtype: DType;
  /** The dtype as the file states it (F32, BF16, ...). */
  fileDtype: string;
  shape: number[];
  /** Byte range in the file (absolute offsets). */
  begin: number;
  end: number;
}

/** Largest header we accept (the format's own reference implementation caps it at 100 MB). */
const MAX_HEADER = 100_000_000;

export function parseHeader(file: string, fileSize: number, readBytes: (pos: number, len: number) => Buffer): { tensors: TensorInfo[]; metadata: Record<string, string> } {
  if (fileSize < 8) throw new SafetensorsError(file, `file is ${fileSize} bytes, too short for a safetensors header`);
  const n = readBytes(0, 8).readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER)) throw new SafetensorsError(file, `header length ${n} is larger than the 100 MB limit (not a safetensors file?)`);
  const headerLen = Number(n);
  if (8 + headerLen > fileSize) throw new SafetensorsError(file, `header length ${headerLen} runs past the end of the file (${fileSize} bytes)`);
  let header: unknown;
  try {
    header = JSON.parse(readBytes(8, headerLen).toString('utf8'));
  } catch (e) {
    throw new SafetensorsError(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new SafetensorsError(file, 'header is not a JSON object');
  const dataStart = 8 + headerLen;
  const dataLen = fileSize - dataStart;
  const tensors: TensorInfo[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null) throw new SafetensorsError(file, '__metadata__ is not an object');
      metadata = Object.fromEntries(Object.entries(entry).map(([k, v]) => {
        if (typeof v !== 'string') throw new SafetensorsError(file, `__metadata__.${k} is not a string`);
        return [k, v];
      }));
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) throw new SafetensorsError(file, `entry '${name}' is not an object`);
    const dtype = typeof e.dtype === 'string' ? FROM_ST[e.dtype] : undefined;
    if (!dtype) throw new SafetensorsError(file, `tensor '${name}' has unsupported dtype ${JSON.stringify(e.dtype)}`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(file, `tensor '${name}' has an invalid shape ${JSON.stringify(e.shape)}`);
    }
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0) || offs[0] > offs[1]) {
      throw new SafetensorsError(file, `tensor '${name}' has invalid data_offsets ${JSON.stringify(offs)}`);
    }
    const [b, en] = offs as [number, number];
    if (en > dataLen) throw new SafetensorsError(file, `tensor '${name}' bytes [${b}, ${en}) lie outside the data section (${dataLen} bytes)`);
    const shape = e.shape as number[];
    const expected = shape.reduce((x, y) => x * y, 1) * ELEMENT_SIZE[dtype];
    if (en - b !== expected) {
      throw new SafetensorsError(file, `tensor '${name}' has ${en - b} bytes but ${e.dtype} x [${shape.join(', ')}] needs ${expected}`);
    }
    tensors.push({ name, dtype, fileDtype: e.dtype as string, shape, begin: dataStart + b, end: dataStart + en });
  }
  // Overlapping ranges would alias two tensors' bytes: a corrupt (or crafted) file.
  const sorted = [...tensors].sort((x, y) => x.begin - y.begin || x.end - y.end);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.begin < prev.end) throw new SafetensorsError(file, `tensors '${prev.name}' and '${cur.name}' overlap in the file`);
  }
  return { tensors, metadata };
}

/** An open safetensors file: the header is parsed, tensor bytes are read when asked for. */
export class SafetensorsFile {
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  #mapping: Mapping | null;

  private constructor(readonly path: string, mapping: Mapping, infos: TensorInfo[], metadata: Record<string, string>) {
    this.#mapping = mapping;
    this.tensors = new Map(infos.map((t) => [t.name, t]));
    this.metadata = metadata;
  }

  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw new SafetensorsError(path, `cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    try {
      const size = fstatSync(fd).size;
      const read = (pos: number, len: number) => {
        const buf = Buffer.alloc(len);
        const got = readSync(fd, buf, 0, len, pos);
        if (got !== len) throw new SafetensorsError(path, `short read at ${pos}`);
        return buf;
      };
      const { tensors, metadata } = parseHeader(path, size, read);
      const [mapping] = native.mmapOpen(path);
      return new SafetensorsFile(path, mapping, tensors, metadata);
    } finally {
      closeSync(fd);
    }
  }

  keys(): string[] {
    return [...this.tensors.keys()];
  }

  /**
   * One tensor. By default a copy in host memory; `{ view: true }` maps the file's pages directly
   * (no copy). The mapping is copy-on-write: writing to a view never changes the file, but later
   * reads through this same open file see the write. dtype/device convert after reading.
   */
  get(name: string, o: { dtype?: DType; device?: Device; view?: boolean } = {}): Tensor {
    const info = this.tensors.get(name);
    if (!info) throw new SafetensorsError(this.path, `no tensor named '${name}'`);
    if (!this.#mapping) throw new SafetensorsError(this.path, 'file was closed');
    const t = wrap(native.mmapTensor(this.#mapping, info.begin, dtypeCode(info.dtype), info.shape, !o.view));
    if ((o.dtype && o.dtype !== info.dtype) || (o.device && o.device !== 'cpu')) {
      const converted = t.to({ dtype: o.dtype, device: o.device });
      t.dispose();
      return converted;
    }
    return t;
  }

  /** Drops this object's reference to the mapping (views keep it alive until they are disposed). */
  close(): void {
    this.#mapping = null;
  }
}

/** Every tensor of a file, in file order (`view`: mapped, not copied; see SafetensorsFile.get). */
export function loadSafetensors(path: string, o: { dtype?: DType; device?: Device; view?: boolean } = {}): Map<string, Tensor> {
  const f = SafetensorsFile.open(path);
  try {
    return new Map(f.keys().map((k) => [k, f.get(k, o)]));
  } finally {
    f.close();
  }
}

/**
 * Writes tensors (any device; copied to host as they are written) to `path` atomically: a temp
 * file in the same folder, fsync, rename. A failure leaves any previous file at `path` untouched.
 */
interface Described {
  dtype: DType;
  shape: number[];
}

/**
 * The file's header (length prefix + JSON padded to 8 bytes) and the order the tensors are written
 * in: larger elements first (stable otherwise), as the safetensors library orders them, so that with
 * the header padded every tensor starts aligned to its element size (the format allows no gaps).
 */
function layout<T extends Described>(path: string, tensors: Map<string, T> | Record<string, T>, metadata?: Record<string, string>): { head: Buffer; entries: [string, T][] } {
  const entries = (tensors instanceof Map ? [...tensors] : Object.entries(tensors))
    .map((e, i) => ({ e, i }))
    .sort((a, b) => ELEMENT_SIZE[b.e[1].dtype] - ELEMENT_SIZE[a.e[1].dtype] || a.i - b.i)
    .map(({ e }) => e);
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === '__metadata__') throw new SafetensorsError(path, "'__metadata__' cannot be a tensor name");
    const bytes = t.shape.reduce((a, b) => a * b, 1) * ELEMENT_SIZE[t.dtype];
    header[name] = { dtype: TO_ST[t.dtype], shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  // Pad the header with spaces to a multiple of 8 so tensor data stays aligned.
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  return { head: Buffer.concat([prefix, json]), entries };
}

function tempPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Date.now()}`);
}

export function saveSafetensors(path: string, tensors: Map<string, Tensor> | Record<string, Tensor>, metadata?: Record<string, string>): void {
  const { head, entries } = layout(path, tensors, metadata);
  const tmp = tempPath(path);
  try {
    native.writeTensors(tmp, head, entries.map(([, t]) => t._h));
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new SafetensorsError(path, `cannot write: ${(e as Error).message}`);
  }
}

/** A tensor's bytes in host memory, owned by JS (nothing of it is shared with libtorch). */
export interface HostTensor {
  dtype: DType;
  shape: number[];
  data: Buffer;
}

/**
 * Host copies of tensors, to be written while the tensors themselves move on (a training step that
 * changes them in place). Device tensors are copied with non-blocking copies (into pinned memory,
 * as PyTorch does for them) and one synchronisation, not one blocking copy each.
 */
export function snapshotTensors(tensors: Map<string, Tensor>): Map<string, HostTensor> {
  return tidy(() => {
    const onHost = new Map<string, Tensor>();
    const cudaIndices = new Set<number>();
    for (const [name, t] of tensors) {
      if (t.isCuda) cudaIndices.add(Number(t.device.split(':')[1] ?? 0));
      onHost.set(name, t.isCuda ? t.detach().to({ device: 'cpu', nonBlocking: true }) : t.detach());
    }
    for (const i of cudaIndices) native.cudaSynchronize(i);
    const out = new Map<string, HostTensor>();
    for (const [name, t] of onHost) out.set(name, { dtype: t.dtype, shape: t.shape, data: Buffer.from(native.toBuffer(t._h)) });
    return out;
  });
}

/**
 * Writes host tensors as a safetensors file without blocking the JS thread (the writes run on
 * libuv's threads): to a temporary file, fsynced, then renamed, so a crash leaves no partial file.
 */
export async function writeSafetensorsAsync(path: string, tensors: Map<string, HostTensor>, metadata?: Record<string, string>): Promise<void> {
  const { head, entries } = layout(path, tensors, metadata);
  const tmp = tempPath(path);
  let f: FileHandle | null = null;
  try {
    f = await open(tmp, 'w');
    await f.write(head);
    for (const [, t] of entries) await f.write(t.data);
    await f.sync();
    await f.close();
    f = null;
    await rename(tmp, path);
  } catch (e) {
    await f?.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw new SafetensorsError(path, `cannot write: ${(e as Error).message}`);
  }
}


