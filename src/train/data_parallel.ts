// Data-parallel training across processes, as accelerate + DDP run train.py: every process holds
// the whole model, trains on its own shard of each batch, and the gradients are averaged before
// every optimizer update (never on accumulation micro-steps: DDP's no_sync). Two c10d groups:
// gradients go over NCCL on CUDA (Gloo on the CPU); the small host-side agreements (does every
// rank have a batch, stop now, the logged metrics, checkpoint state) go over Gloo, so they never
// wait on the GPU.
//
// Reduction: DDP's buckets of about --ddp_bucket_mb (25 MB) in reverse parameter order; during the
// update's last backward, C++ hooks on the gradient accumulators start each bucket's all-reduce as
// soon as its gradients are final (torch.distributed.GradientReducer), so the transfers overlap
// the rest of backward, as DDP's Reducer does; after backward the update waits for what is left.
import * as torch from '../torch/index.js';
import { UserError } from '../util/errors.js';

/** Where this process sits: torchrun's variables, else SLURM's, else a single process. */
export interface ProcessLayout {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
  source: 'torchrun' | 'slurm' | 'single';
  /** torchrun's restart count: each attempt keeps its keys apart in the agent's store (as torch's PrefixStore /worker/attempt_N). */
  attempt: number;
}

function intVar(env: NodeJS.ProcessEnv, name: string, min: number): number {
  const v = Number(env[name]);
  if (!(Number.isInteger(v) && v >= min)) throw new UserError(`${name} must be an integer >= ${min}, got '${env[name]}'`);
  return v;
}

/**
 * torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT (so do
 * `diffusion-dpo launch` and Kubernetes' PyTorchJob); under SLURM without them, SLURM_PROCID,
 * SLURM_NTASKS and SLURM_LOCALID give the layout and MASTER_ADDR must name the first node unless the
 * job has one node.
 */
export function processLayout(env: NodeJS.ProcessEnv): ProcessLayout {
  const port = env.MASTER_PORT === undefined ? 29500 : intVar(env, 'MASTER_PORT', 1);
  if (port > 65535) throw new UserError(`MASTER_PORT must be a port number, got ${port}`);
  if (env.WORLD_SIZE !== undefined) {
    const worldSize = intVar(env, 'WORLD_SIZE', 1);
    if (worldSize === 1) return single();
    const rank = intVar(env, 'RANK', 0);
    if (rank >= worldSize) throw new UserError(`RANK ${rank} is outside WORLD_SIZE ${worldSize}`);
    if (!env.MASTER_ADDR) throw new UserError('WORLD_SIZE > 1 needs MASTER_ADDR (the address of rank 0\'s host), as torchrun sets it');
    // a launcher that sets no LOCAL_RANK (a Kubernetes PyTorchJob pod: one process) means the pod's first GPU
    const localRank = env.LOCAL_RANK === undefined ? 0 : intVar(env, 'LOCAL_RANK', 0);
    const localWorldSize = env.LOCAL_WORLD_SIZE === undefined ? worldSize : intVar(env, 'LOCAL_WORLD_SIZE', 1);
    const attempt = env.TORCHELASTIC_RESTART_COUNT === undefined ? 0 : intVar(env, 'TORCHELASTIC_RESTART_COUNT', 0);
    return { rank, worldSize, localRank, localWorldSize, masterAddr: env.MASTER_ADDR, masterPort: port, source: 'torchrun', attempt };
  }
  // only inside an srun step (SLURM_STEP_ID): the batch script of an 8-task job also sees SLURM_NTASKS=8 and SLURM_PROCID=0
  if (env.SLURM_NTASKS !== undefined && env.SLURM_PROCID !== undefined && env.SLURM_STEP_ID !== undefined) {
    const worldSize = intVar(env, 'SLURM_NTASKS', 1);
    if (worldSize === 1) return single();
    const rank = intVar(env, 'SLURM_PROCID', 0);
    const nodes = env.SLURM_NNODES === undefined ? 1 : intVar(env, 'SLURM_NNODES', 1);
    const masterAddr = env.MASTER_ADDR ?? (nodes === 1 ? '127.0.0.1' : null);
    if (!masterAddr) {
      throw new UserError(`a SLURM job of ${nodes} nodes needs MASTER_ADDR, the first node's address: ` +
        'export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1) before srun');
    }
    const localRank = env.SLURM_LOCALID === undefined ? 0 : intVar(env, 'SLURM_LOCALID', 0);
    return { rank, worldSize, localRank, localWorldSize: Math.ceil(worldSize / nodes), masterAddr, masterPort: port, source: 'slurm', attempt: 0 };
  }
  return single();

  function single(): ProcessLayout {
    return { rank: 0, worldSize: 1, localRank: Number(env.LOCAL_RANK ?? 0) || 0, localWorldSize: 1, masterAddr: '127.0.0.1', masterPort: port, source: 'single', attempt: 0 };
  }
}

export interface DataParallelOptions {
  /** Per collective and for the rendezvous: a rank that does not take part within it fails the job. */
  timeoutMs: number;
  /** Gradient bucket size in bytes. */
  bucketBytes: number;
}

/**
 * DDP's bucketing: parameters in `order` (default: reverse, as the last layers' gradients tend to be
 * ready first; after the first update, the order they were ready in), a new bucket when the dtype
 * or device changes or the next parameter would pass `bucketBytes`; as indices into `params`.
 * Parameters missing from `order` come last, in reverse order.
 */
export function gradientBuckets(params: readonly torch.Tensor[], bucketBytes: number, order: readonly number[] = []): number[][] {
  const listed = new Set(order);
  const sequence = [...order, ...params.map((_, i) => params.length - 1 - i).filter((i) => !listed.has(i))];
  const buckets: number[][] = [];
  let bytes = 0;
  let last: torch.Tensor | null = null;
  for (const i of sequence) {
    const p = params[i]!;
    const size = p.numel() * torch.ELEMENT_SIZE[p.dtype];
    const fits = last && last.dtype === p.dtype && last.device === p.device && bytes + size <= bucketBytes;
    if (!fits) {
      buckets.push([]);
      bytes = 0;
    }
    buckets[buckets.length - 1]!.push(i);
    bytes += size;
    last = p;
  }
  return buckets;
}

export class DataParallel {
  /** Seconds the update waited for the gradient average since the last read (for telemetry). */
  #commSeconds = 0;
  #reducer: torch.distributed.GradientReducer | null = null;
  #rebucketed = false;

  private constructor(
    readonly layout: ProcessLayout, readonly store: torch.distributed.Store,
    readonly control: torch.distributed.ProcessGroup, readonly grads: torch.distributed.ProcessGroup, readonly o: DataParallelOptions,
  ) {}

  get rank(): number {
    return this.layout.rank;
  }

  get size(): number {
    return this.layout.worldSize;
  }

  /** Rendezvous at MASTER_ADDR:MASTER_PORT and the two groups. */
  static async start(layout: ProcessLayout, device: torch.Device, o: DataParallelOptions): Promise<DataParallel> {
    const { rank, worldSize: size, masterAddr, masterPort } = layout;
    let store: torch.distributed.Store;
    try {
      // under torchrun its agent already serves the store at MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE), as for torch.distributed's env:// init
      const agentStore = process.env.TORCHELASTIC_USE_AGENT_STORE === 'True';
      store = await torch.distributed.Store.connect({ host: masterAddr, port: masterPort, isServer: rank === 0 && !agentStore, worldSize: size, timeoutMs: o.timeoutMs });
    } catch (e) {
      throw new torch.distributed.DistributedError(`rank ${rank} of ${size}: ${(e as Error).message}`, { cause: e });
    }
    const keys = `attempt_${layout.attempt}/`;
    const control = await torch.distributed.ProcessGroup.create(store, { backend: 'gloo', rank, size, timeoutMs: o.timeoutMs, name: `${keys}control` });
    const cuda = torch.deviceType(device) === 'cuda';
    const grads = cuda
      ? await torch.distributed.ProcessGroup.create(store, { backend: 'nccl', rank, size, timeoutMs: o.timeoutMs, name: `${keys}grads`, deviceIndex: Number(device.split(':')[1] ?? 0) })
      : control;
    return new DataParallel(layout, store, control, grads, o);
  }

  /** Every rank's tensors become rank 0's (parameters and buffers at start, as DDP's constructor). */
  async broadcastFromRankZero(tensors: readonly torch.Tensor[]): Promise<void> {
    const works = tensors.map((t) => this.grads.broadcast(t, 0));
    await torch.distributed.waitAll(works);
  }

  #reducerFor(params: readonly torch.Tensor[]): torch.distributed.GradientReducer {
    this.#reducer ??= new torch.distributed.GradientReducer(this.grads, params, gradientBuckets(params, this.o.bucketBytes));
    return this.#reducer;
  }

  /**
   * Before the backward whose gradients complete the update: their average starts bucket by
   * bucket while that backward runs. The micro-steps before it accumulate locally (DDP's no_sync).
   */
  armBeforeLastBackward(params: readonly torch.Tensor[]): void {
    this.#reducerFor(params).arm();
  }

  /**
   * Averages the gradients of `params` over the ranks (in place), after the update's last
   * backward: waits for the buckets started during it and reduces the rest. A parameter without
   * a gradient on this rank contributes zeros and receives the average, as DDP with unused
   * parameters.
   */
  async averageGradients(params: readonly torch.Tensor[]): Promise<void> {
    const t0 = performance.now();
    const reducer = this.#reducerFor(params);
    await reducer.finish();
    this.#commSeconds += (performance.now() - t0) / 1000;
    if (!this.#rebucketed) {
      // as DDP's rebuild_buckets after the first iteration: buckets in the order the gradients
      // became ready on rank 0 (the same on every rank), so the first bucket starts early in backward
      this.#rebucketed = true;
      const order = JSON.parse(await this.shareFromRankZero('gradient-ready-order', this.rank === 0 ? JSON.stringify(reducer.readyOrder()) : null)) as number[];
      reducer.rebucket(gradientBuckets(params, this.o.bucketBytes, order));
    }
  }

  /** Seconds spent waiting for the gradient average since the last call. */
  takeCommSeconds(): number {
    const s = this.#commSeconds;
    this.#commSeconds = 0;
    return s;
  }

  /** The element-wise sum over the ranks of a few host numbers (metrics, flags). */
  async sum(values: readonly number[]): Promise<number[]> {
    const t = torch.tensor([...values], { dtype: 'float64' });
    try {
      await this.control.allReduce(t, 'sum').wait();
      return t.toArray();
    } finally {
      t.dispose();
    }
  }

  /** True on every rank when `flag` is true on any. */
  async any(flag: boolean): Promise<boolean> {
    return (await this.sum([flag ? 1 : 0]))[0]! > 0;
  }

  /** True on every rank when `flag` is true on all. */
  async all(flag: boolean): Promise<boolean> {
    return (await this.sum([flag ? 1 : 0]))[0]! === this.size;
  }

  /** Rank 0 receives every rank's string for `key` (in rank order); the others get null. */
  async gatherStrings(key: string, value: string): Promise<string[] | null> {
    const k = this.#key(key);
    this.store.set(`${k}/${this.rank}`, value);
    if (this.rank !== 0) return null;
    return Promise.all(Array.from({ length: this.size }, (_, r) => this.store.get(`${k}/${r}`)));
  }

  /** Every rank receives rank 0's string for `key`. */
  async shareFromRankZero(key: string, value: string | null): Promise<string> {
    const k = this.#key(key);
    if (this.rank === 0) this.store.set(k, value ?? '');
    return this.store.get(k);
  }

  #decisions = 0;

  /**
   * A decision rank 0 makes (from what it sees: its files, its pending writes) and every rank
   * follows, so that ranks never take different collective paths. Every rank must call it, in
   * the same order.
   */
  async decide<T>(decideOnRankZero: () => T | Promise<T>): Promise<T> {
    const key = `decision/${this.#decisions++}`;
    return JSON.parse(await this.shareFromRankZero(key, this.rank === 0 ? JSON.stringify(await decideOnRankZero()) : null)) as T;
  }

  /** Store keys of this attempt (torchrun restarts keep their keys apart). */
  #key(key: string): string {
    return `attempt_${this.layout.attempt}/${key}`;
  }

  async barrier(): Promise<void> {
    await this.control.barrier().wait();
  }

  /** Releases the groups; `failed`: abort NCCL's communicators instead of waiting for them to drain (a peer may be gone). */
  destroy(o: { failed?: boolean } = {}): void {
    if (this.grads !== this.control) this.grads.destroy(o);
    this.control.destroy(o);
  }
}
