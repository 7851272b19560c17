// The addon's whole surface, typed in one place (as onnxruntime-node's binding.ts does). Nothing
// outside src/torch/ imports this file. Handles are plain numbers; see native/src/common.h.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Handle = number;
/** A native file mapping (opaque). */
export type Mapping = { readonly __mapping: unique symbol };
/** A native at::Generator (opaque). */
export type NativeGenerator = { readonly __generator: unique symbol };
/** c10d objects (opaque): a TCPStore, a process group, a pending collective. */
export type NativeStore = { readonly __store: unique symbol };
export type NativeGroup = { readonly __group: unique symbol };
export type NativeWork = { readonly __work: unique symbol };
export type NativeReducer = { readonly __reducer: unique symbol };
export type ReduceOp = 'sum' | 'avg' | 'max' | 'min' | 'product';

export interface BuildInfo {
  torchVersion: string;
  torchLibDir: string;
  cxx11Abi: boolean;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  mkl: boolean;
  mkldnn: boolean;
  openmp: boolean;
  parallelInfo: string;
  config: string;
}

/** The kernels scaled_dot_product_attention may choose from. */
export interface SdpBackends {
  flash: boolean;
  efficient: boolean;
  math: boolean;
  cudnn: boolean;
}

export interface Binding {
  // tensors
  fromBuffer(data: ArrayBufferView | ArrayBuffer, dtype: number, shape: readonly number[]): Handle;
  toBuffer(h: Handle): ArrayBuffer;
  item(h: Handle): number | boolean | bigint;
  meta(h: Handle): [number, string, boolean, ...number[]];
  strides(h: Handle): number[];
  sameStorage(a: Handle, b: Handle): boolean;
  /** A second handle to the same TensorImpl (same data, grad and autograd identity). */
  share(h: Handle): Handle;
  dispose(h: Handle): boolean;
  disposeMany(handles: Float64Array): number;
  liveTensors(): { live: number; peak: number };
  scalarTypeCodes(): Record<string, number>;
  // operators
  opHandle(name: string, overload: string): number;
  opSchema(id: number): string;
  callOp(id: number, ...args: unknown[]): unknown;
  // autograd and modes
  backward(tensors: Handle[], grads: (Handle | null)[] | null, retainGraph?: boolean, createGraph?: boolean): void;
  autogradGrad(outputs: Handle[], inputs: Handle[], gradOutputs: (Handle | null)[] | null, retainGraph?: boolean,
    createGraph?: boolean, allowUnused?: boolean): (Handle | null)[];
  getGrad(h: Handle): Handle | null;
  setGrad(h: Handle, grad: Handle | null): void;
  setRequiresGrad(h: Handle, requiresGrad: boolean): void;
  autogradInfo(h: Handle): [boolean, string | null];
  retainGrad(h: Handle): void;
  setGradEnabled(enabled?: boolean): boolean;
  inferenceModeEnter(enabled: boolean): number;
  inferenceModeExit(depth: number): void;
  isInferenceMode(): boolean;
  autocastEnter(device: string, dtype: number, enabled: boolean): [boolean, number];
  autocastExit(device: string, prevEnabled: boolean, prevDtype: number): void;
  autocastState(device: string): [boolean, number];
  /** Sets whether autocast caches casts of fp32 leaf weights (when given); returns the previous setting. */
  autocastCacheEnabled(enabled?: boolean): boolean;
  // runtime
  buildInfo(): BuildInfo;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  generatorDefault(device: string): NativeGenerator;
  generatorNew(device: string, seed?: number | bigint): NativeGenerator;
  generatorManualSeed(g: NativeGenerator, seed: number | bigint): void;
  generatorInitialSeed(g: NativeGenerator): number | bigint;
  generatorDevice(g: NativeGenerator): string;
  generatorGetState(g: NativeGenerator): Handle;
  generatorSetState(g: NativeGenerator, state: Handle): void;
  manualSeed(seed: number | bigint): void;
  cudaSynchronize(index?: number): void;
  cudaSynchronizeAsync(index?: number): Promise<void>;
  cudaDeviceInfo(index?: number): { name: string; totalMemory: number; major: number; minor: number };
  cudaEmptyCache(): void;
  cudaMemory(index?: number): { allocated: number; reserved: number; peakAllocated: number; peakReserved: number };
  cudaResetPeak(index?: number): void;
  setAllowTF32(allow: boolean): void;
  setDeterministic(on: boolean): void;
  exitNow(code: number): never;
  setCudnnBenchmark(on: boolean): void;
  sdpBackends(set?: Partial<SdpBackends>): SdpBackends;
  mathSettings(): { tf32Matmul: boolean; tf32Cudnn: boolean; cudnnBenchmark: boolean; deterministic: boolean };
  // io
  mmapOpen(path: string): [Mapping, number];
  mmapTensor(m: Mapping, byteOffset: number, dtype: number, shape: readonly number[], copy?: boolean): Handle;
  writeTensors(path: string, header: Buffer | null, tensors: Handle[]): number;
  // c10d (native/src/dist.cc)
  distBackends(): { gloo: boolean; nccl: boolean };
  distStore(host: string, port: number, isServer: boolean, worldSize: number, timeoutMs: number): Promise<NativeStore>;
  distStoreSet(store: NativeStore, key: string, value: string): void;
  distStoreAdd(store: NativeStore, key: string, n: number): number;
  distStoreGet(store: NativeStore, key: string): Promise<string>;
  distGroup(store: NativeStore, backend: 'gloo' | 'nccl', rank: number, size: number, timeoutMs: number, prefix: string, deviceIndex: number | null): Promise<NativeGroup>;
  distGroupDestroy(group: NativeGroup, abort: boolean): void;
  distAllReduce(group: NativeGroup, tensor: Handle, op: ReduceOp): NativeWork;
  distBroadcast(group: NativeGroup, tensor: Handle, root: number): NativeWork;
  distAllGather(group: NativeGroup, outputs: Handle[], input: Handle): NativeWork;
  distReduceScatter(group: NativeGroup, output: Handle, inputs: Handle[], op: ReduceOp): NativeWork;
  distBarrier(group: NativeGroup): NativeWork;
  distWait(works: NativeWork[], timeoutMs: number): Promise<void>;
  distReducer(group: NativeGroup, params: Handle[], buckets: number[][], divisor: number): NativeReducer;
  distReducerArm(reducer: NativeReducer): void;
  distReducerFinish(reducer: NativeReducer, timeoutMs: number): Promise<number>;
  distReducerReadyOrder(reducer: NativeReducer): number[];
  distReducerRebucket(reducer: NativeReducer, buckets: number[][]): void;
  // images
  pilResize(pixels: Uint8Array, width: number, height: number, channels: number, outWidth: number, outHeight: number, filter: number): Uint8Array;
}

function addonPath(): string {
  if (process.env.DPO_ADDON) return process.env.DPO_ADDON;
  // dist/src/torch/native.js and src/torch/native.ts are both three levels below the root.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'native', 'build', 'Release', 'dpo_torch.node');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error('the libtorch addon is not built: run `npm run setup` (it builds native/build/Release/dpo_torch.node)');
}

function load(): Binding {
  const path = addonPath();
  try {
    return createRequire(import.meta.url)(path) as Binding;
  } catch (e) {
    const err = e as Error;
    throw new Error(`cannot load the libtorch addon ${path}: ${err.message}\n` +
      'If libtorch moved or changed since the build, run `npm run build:native -- --force`.', { cause: e });
  }
}

export const native: Binding = load();
