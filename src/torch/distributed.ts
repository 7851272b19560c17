// c10d process groups (torch.distributed's engine): a TCPStore rendezvous, Gloo for CPU tensors,
// NCCL for CUDA tensors, and the collectives. Collectives return at once with a Work (Gloo runs
// them on its threads, NCCL on its stream); `await work.wait()` waits off the JS thread. The
// collective's tensors must not be changed or freed until then (the native side holds a reference,
// so disposing the JS tensor is safe; writing to it is not).
//
// Every process must issue the same collectives in the same order, as with torch.distributed.
import { native, type NativeGroup, type NativeReducer, type NativeStore, type NativeWork, type ReduceOp } from './native.js';
import type { Tensor } from './tensor.js';

export type { ReduceOp };
export type Backend = 'gloo' | 'nccl';

/** What this build of the addon can create: Gloo needs gloo's headers at build time, NCCL also a CUDA libtorch. */
export function availableBackends(): { gloo: boolean; nccl: boolean } {
  return native.distBackends();
}

export class DistributedError extends Error {
  override name = 'DistributedError';
}

/** Rewrites a c10d failure to say which rank saw it, in which collective, and what it likely means. */
function failure(where: string, e: unknown, timeoutMs?: number): DistributedError {
  const message = (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
  const meaning = /timed? ?out/i.test(message)
    ? `: no answer${timeoutMs ? ` within ${timeoutMs / 1000} s` : ''}, another process stopped taking part or hangs`
    : /closed by peer|reset by peer|broken pipe|connection refused/i.test(message) ? ': another process of the job has ended' : '';
  return new DistributedError(`${where}: ${message}${meaning}`, { cause: e });
}

/** torch.distributed's TCPStore: rank 0 serves, the others connect; it holds the groups' rendezvous keys. */
export class Store {
  private constructor(readonly native: NativeStore, readonly host: string, readonly port: number) {}

  /**
   * Rank 0 listens on host:port and waits until `worldSize` processes connected; the others retry
   * connecting until `timeoutMs`.
   */
  static async connect(o: { host: string; port: number; isServer: boolean; worldSize: number; timeoutMs: number }): Promise<Store> {
    try {
      return new Store(await native.distStore(o.host, o.port, o.isServer, o.worldSize, o.timeoutMs), o.host, o.port);
    } catch (e) {
      throw failure(`rendezvous at ${o.host}:${o.port} (${o.isServer ? 'serving' : 'connecting'}, ${o.worldSize} processes, timeout ${o.timeoutMs / 1000} s)`, e, o.timeoutMs);
    }
  }

  set(key: string, value: string): void {
    native.distStoreSet(this.native, key, value);
  }

  /** Waits (up to the store's timeout) until the key is set. */
  get(key: string): Promise<string> {
    return native.distStoreGet(this.native, key);
  }

  add(key: string, n: number): number {
    return native.distStoreAdd(this.native, key, n);
  }
}

/** A collective in flight. */
export class Work {
  constructor(private readonly native: NativeWork, private readonly where: string, private readonly timeoutMs: number) {}

  async wait(): Promise<void> {
    try {
      await native.distWait([this.native], this.timeoutMs);
    } catch (e) {
      throw failure(this.where, e, this.timeoutMs);
    }
  }
}

/** Waits for several collectives in one hop off the JS thread. */
export async function waitAll(works: readonly Work[]): Promise<void> {
  for (const w of works) await w.wait();
}

export interface ProcessGroupOptions {
  backend: Backend;
  rank: number;
  size: number;
  /** Per collective: a peer that does not take part within it fails the collective. */
  timeoutMs: number;
  /** Keys of this group in the store (several groups share one store). */
  name: string;
  /** NCCL: this process's CUDA device. */
  deviceIndex?: number;
}

export class ProcessGroup {
  #native: NativeGroup | null;

  private constructor(native: NativeGroup, readonly backend: Backend, readonly rank: number, readonly size: number, readonly timeoutMs: number) {
    this.#native = native;
  }

  /** Creates the group: every rank must call this with the same name (a rendezvous through the store). */
  static async create(store: Store, o: ProcessGroupOptions): Promise<ProcessGroup> {
    const have = availableBackends();
    if (!have[o.backend]) {
      throw new DistributedError(o.backend === 'nccl'
        ? 'this build of the addon has no NCCL (a CPU libtorch, or nccl.h was not found at build time): see docs/distributed.md'
        : 'this build of the addon has no Gloo (gloo\'s headers were not found at build time): see docs/distributed.md');
    }
    try {
      const g = await native.distGroup(store.native, o.backend, o.rank, o.size, o.timeoutMs, o.name, o.deviceIndex ?? null);
      return new ProcessGroup(g, o.backend, o.rank, o.size, o.timeoutMs);
    } catch (e) {
      throw failure(`rank ${o.rank} of ${o.size}: creating the ${o.backend} group '${o.name}'`, e);
    }
  }

  #group(): NativeGroup {
    if (!this.#native) throw new DistributedError('the process group was destroyed');
    return this.#native;
  }

  #work(what: string, start: () => NativeWork): Work {
    const where = `rank ${this.rank} of ${this.size}: ${this.backend} ${what}`;
    try {
      return new Work(start(), where, this.timeoutMs);
    } catch (e) {
      throw failure(where, e);
    }
  }

  /** In place: `tensor` becomes the reduction over all ranks. Gloo has no 'avg' (sum, then divide). */
  allReduce(tensor: Tensor, op: ReduceOp = 'sum'): Work {
    return this.#work(`allReduce(${op})`, () => native.distAllReduce(this.#group(), tensor._h, op));
  }

  /** In place: every rank's `tensor` becomes root's. */
  broadcast(tensor: Tensor, root = 0): Work {
    return this.#work(`broadcast(root ${root})`, () => native.distBroadcast(this.#group(), tensor._h, root));
  }

  /** outputs[r] receives rank r's `input` (one output per rank, each shaped as input). */
  allGather(outputs: readonly Tensor[], input: Tensor): Work {
    return this.#work('allGather', () => native.distAllGather(this.#group(), outputs.map((t) => t._h), input._h));
  }

  /** `output` becomes the reduction over ranks of their inputs[rank] (one input per rank). */
  reduceScatter(output: Tensor, inputs: readonly Tensor[], op: ReduceOp = 'sum'): Work {
    return this.#work(`reduceScatter(${op})`, () => native.distReduceScatter(this.#group(), output._h, inputs.map((t) => t._h), op));
  }

  barrier(): Work {
    return this.#work('barrier', () => native.distBarrier(this.#group()));
  }

  /** @internal the native group, for GradientReducer. */
  get nativeGroup(): NativeGroup {
    return this.#group();
  }

  /**
   * Releases the group (joins Gloo's threads; shuts NCCL's communicators down, or with `failed`
   * aborts them: a shutdown waits for in-flight work that a dead peer never completes).
   */
  destroy(o: { failed?: boolean } = {}): void {
    if (this.#native) native.distGroupDestroy(this.#native, o.failed ?? false);
    this.#native = null;
  }
}

/**
 * Averages the gradients of `params` over a group, overlapped with backward as DDP's Reducer:
 * C++ hooks on the parameters' gradient accumulators start each bucket's all-reduce as soon as
 * all its gradients are final, in bucket order. `arm()` before the backward whose gradients are to
 * be averaged (backwards before it only accumulate, as DDP's no_sync); `finish()` after it starts
 * what backward did not (all of it without an arm), waits, and writes the averages into `.grad`.
 * `buckets` hold indices into `params`, each exactly once, in the order their reductions start.
 */
export class GradientReducer {
  readonly #native: NativeReducer;

  constructor(private readonly group: ProcessGroup, params: readonly Tensor[], buckets: readonly (readonly number[])[]) {
    try {
      this.#native = native.distReducer(group.nativeGroup, params.map((p) => p._h), buckets.map((b) => [...b]), group.size);
    } catch (e) {
      throw failure(`rank ${group.rank} of ${group.size}: creating the gradient reducer`, e);
    }
  }

  arm(): void {
    native.distReducerArm(this.#native);
  }

  /** Parameter indices in the order their gradients first became final in a backward (those seen so far). */
  readyOrder(): number[] {
    return native.distReducerReadyOrder(this.#native);
  }

  /** New buckets, between updates (every rank must pass the same: DDP rebuilds them from rank 0's order). */
  rebucket(buckets: readonly (readonly number[])[]): void {
    native.distReducerRebucket(this.#native, buckets.map((b) => [...b]));
  }

  /** Resolves with the number of buckets whose all-reduce started during backward. */
  async finish(): Promise<number> {
    try {
      return await native.distReducerFinish(this.#native, this.group.timeoutMs);
    } catch (e) {
      throw failure(`rank ${this.group.rank} of ${this.group.size}: ${this.group.backend} gradient all-reduce`, e, this.group.timeoutMs);
    }
  }
}
