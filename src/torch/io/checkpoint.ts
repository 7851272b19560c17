// PyTorch checkpoints (.bin / .pt / .pth / .ckpt written by torch.save): a zip with
// <prefix>/data.pkl (the object, pickled) and <prefix>/data/<key> (raw storages, little-endian).
// The pickle goes through the restricted unpickler; storages are memory-mapped, never copied
// into the JS heap. The pre-1.6 non-zip format and TorchScript archives are recognised and refused.
import { closeSync, openSync, readSync } from 'node:fs';
import { type DType, dtypeCode, ELEMENT_SIZE } from '../dtype.js';
import type { Device } from '../device.js';
import { native } from '../native.js';
import { OP } from '../ops.js';
import { Tensor, wrap } from '../tensor.js';
import { PickleCallable, UnpicklingError, unpickle } from './pickle.js';
import { ZipReader } from './zip.js';
import { UserError } from '../../util/errors.js';

export class CheckpointError extends UserError {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'CheckpointError';
  }
}

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'float32', HalfStorage: 'float16', BFloat16Storage: 'bfloat16', DoubleStorage: 'float64',
  LongStorage: 'int64', IntStorage: 'int32', ShortStorage: 'int16', CharStorage: 'int8', ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

class StorageType {
  constructor(readonly dtype: DType) {}
}

interface StorageRef {
  key: string;
  dtype: DType;
  location: string;
  numel: number;
}

/** A tensor described by the pickle, not yet read. */
export class TensorRef {
  constructor(readonly storage: StorageRef, readonly offset: number, readonly shape: number[], readonly stride: number[], readonly requiresGrad: boolean) {}
  get dtype(): DType {
    return this.storage.dtype;
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get nbytes(): number {
    return this.numel * ELEMENT_SIZE[this.dtype];
  }
}

const intList = (v: unknown, what: string): number[] => {
  if (!Array.isArray(v) || !v.every((x) => Number.isSafeInteger(x))) throw new UnpicklingError(`${what} is not a list of integers`);
  return v as number[];
};

function globals(module: string, name: string): unknown {
  const q = `${module}.${name}`;
  if (q === 'collections.OrderedDict') {
    return new PickleCallable(q, (args) => new Map((args[0] as [unknown, unknown][] | undefined) ?? []));
  }
  if (module === 'torch' && STORAGE_DTYPES[name]) return new StorageType(STORAGE_DTYPES[name]!);
  if (q === 'torch._utils._rebuild_tensor_v2' || q === 'torch._utils._rebuild_tensor') {
    return new PickleCallable(q, ([storage, offset, size, stride, requiresGrad]) => {
      if (!(storage instanceof Object) || !('key' in (storage as object))) throw new UnpicklingError(`${q}: first argument is not a storage`);
      return new TensorRef(storage as StorageRef, Number(offset), intList(size, 'tensor size'), intList(stride, 'tensor stride'), requiresGrad === true);
    });
  }
  if (q === 'torch._utils._rebuild_parameter' || q === 'torch._utils._rebuild_parameter_with_state') {
    return new PickleCallable(q, ([data, requiresGrad]) => {
      if (!(data instanceof TensorRef)) throw new UnpicklingError(`${q}: data is not a tensor`);
      return new TensorRef(data.storage, data.offset, data.shape, data.stride, requiresGrad === true);
    });
  }
  if (q === 'torch.Size') return new PickleCallable(q, ([dims]) => intList(dims ?? [], 'torch.Size'));
  if (q === 'torch.device') return new PickleCallable(q, (args) => args.join(':'));
  return undefined;
}

function persistentLoad(pid: unknown): StorageRef {
  if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) throw new UnpicklingError(`unsupported persistent id ${JSON.stringify(pid)}`);
  const [, type, key, location, numel] = pid as [string, unknown, unknown, unknown, unknown];
  if (!(type instanceof StorageType)) throw new UnpicklingError('persistent id names an unknown storage type');
  return { key: String(key), dtype: type.dtype, location: String(location), numel: Number(numel) };
}

/** The first `n` bytes of a file (fewer if it is shorter). */
export function readFileHead(path: string, n: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(n);
    const got = readSync(fd, head, 0, n, 0);
    return head.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/** Which weight format a file is in, from its first bytes: a zip or pickle is a PyTorch checkpoint. */
export function isTorchCheckpoint(path: string): boolean {
  const head = readFileHead(path, 4);
  return (head.length === 4 && head.readUInt32LE(0) === 0x04034b50) || head[0] === 0x80;
}

const LEGACY_MAGIC = Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);

/** An opened checkpoint: the object tree with TensorRefs in place of tensors. */
export class TorchCheckpoint {
  readonly root: unknown;
  readonly #zip: ZipReader;
  readonly #prefix: string;
  #mapping: ReturnType<typeof native.mmapOpen>[0] | undefined;

  private constructor(readonly path: string, zip: ZipReader, prefix: string, root: unknown) {
    this.#zip = zip;
    this.#prefix = prefix;
    this.root = root;
  }

  static open(path: string): TorchCheckpoint {
    let head: Buffer;
    try {
      head = readFileHead(path, 16);
    } catch (e) {
      throw new CheckpointError(path, `cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    if (head.subarray(0, LEGACY_MAGIC.length).equals(LEGACY_MAGIC)) {
      throw new CheckpointError(path, 'this is the legacy (pre-1.6, non-zip) PyTorch format, which is not supported: ' +
        're-save it with torch.save(obj, path) from PyTorch >= 1.6, or convert it to safetensors');
    }
    if (head.length < 4 || head.readUInt32LE(0) !== 0x04034b50) throw new CheckpointError(path, 'not a PyTorch checkpoint (not a zip file)');
    let zip: ZipReader;
    try {
      zip = new ZipReader(path);
    } catch (e) {
      throw new CheckpointError(path, (e as Error).message);
    }
    try {
      const pkl = [...zip.entries.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n));
      if (!pkl) {
        const isScript = [...zip.entries.keys()].some((n) => /\/constants\.pkl$|\/code\//.test(n));
        throw new CheckpointError(path, isScript ? 'this is a TorchScript archive, not a checkpoint' : 'no data.pkl in the archive');
      }
      const prefix = pkl.slice(0, -'data.pkl'.length);
      const order = zip.entries.get(`${prefix}byteorder`);
      if (order && zip.readEntry(order.name).toString().trim() !== 'little') throw new CheckpointError(path, 'big-endian checkpoints are not supported');
      const root = unpickle(zip.readEntry(pkl), { global: globals, persistentLoad });
      return new TorchCheckpoint(path, zip, prefix, root);
    } catch (e) {
      zip.close();
      if (e instanceof CheckpointError) throw e;
      throw new CheckpointError(path, (e as Error).message);
    }
  }

  /** Every tensor in the object tree with its dotted path (dict keys and list indices). */
  tensorRefs(): [string, TensorRef][] {
    const out: [string, TensorRef][] = [];
    const walk = (v: unknown, path: string) => {
      if (v instanceof TensorRef) out.push([path, v]);
      else if (v instanceof Map) for (const [k, x] of v) walk(x, path ? `${path}.${String(k)}` : String(k));
      else if (Array.isArray(v)) v.forEach((x, i) => walk(x, path ? `${path}.${i}` : String(i)));
    };
    walk(this.root, '');
    return out;
  }

  /** Reads one tensor: its storage is mapped, then viewed with the pickled size/stride/offset and copied. */
  load(ref: TensorRef, o: { dtype?: DType; device?: Device } = {}): Tensor {
    const name = `${this.#prefix}data/${ref.storage.key}`;
    const entry = this.#zip.entries.get(name);
    if (!entry) throw new CheckpointError(this.path, `storage '${ref.storage.key}' is missing from the archive`);
    if (entry.method !== 0) throw new CheckpointError(this.path, `storage '${ref.storage.key}' is compressed, which torch.save never does`);
    const storageBytes = ref.storage.numel * ELEMENT_SIZE[ref.dtype];
    if (entry.size < storageBytes) throw new CheckpointError(this.path, `storage '${ref.storage.key}' has ${entry.size} bytes, expected ${storageBytes}`);
    let maxIndex = ref.offset;
    for (let i = 0; i < ref.shape.length; i++) if (ref.shape[i]! > 0) maxIndex += (ref.shape[i]! - 1) * ref.stride[i]!;
    if (ref.numel > 0 && (ref.offset < 0 || maxIndex >= ref.storage.numel)) {
      throw new CheckpointError(this.path, `a tensor view [${ref.shape.join(', ')}] runs outside its storage '${ref.storage.key}'`);
    }
    this.#mapping ??= native.mmapOpen(this.path)[0];
    const mapping = this.#mapping;
    const storage = wrap(native.mmapTensor(mapping, this.#zip.dataOffset(entry), dtypeCode(ref.dtype), [ref.storage.numel], false));
    try {
      const view = wrap(native.callOp(OP.as_strided, storage._h, ref.shape, ref.stride, ref.offset));
      try {
        return view.to({ dtype: o.dtype, device: o.device, copy: true, memoryFormat: 'contiguous' });
      } finally {
        view.dispose();
      }
    } finally {
      storage.dispose();
    }
  }

  close(): void {
    this.#zip.close();
    this.#mapping = undefined;
  }
}

/**
 * Loads a checkpoint's tensors as a flat name -> tensor map. A top-level "state_dict" (as in
 * HPSv2's file) or "module." prefixes are not unwrapped here; callers decide.
 */
export function loadTorchCheckpoint(path: string, o: { dtype?: DType; device?: Device } = {}): Map<string, Tensor> {
  const ckpt = TorchCheckpoint.open(path);
  try {
    return new Map(ckpt.tensorRefs().map(([name, ref]) => [name, ckpt.load(ref, o)]));
  } finally {
    ckpt.close();
  }
}
