// One optimizer update, as train.py's loop body runs it under accelerate: micro-steps accumulate
// gradients (each loss divided by the accumulation count, as accelerator.backward does) until
// `gradient_accumulation_steps` batches are in, or the epoch ends (accelerate then updates with
// what it has); then the gradients are unscaled (fp16), clipped (unless --use_adafactor), applied,
// the LR schedule steps once per process, and the gradients are zeroed.
//
// Backward is where the trained model's gradients appear (gradient checkpointing replays its
// segments there), and the update is the one place they are read: what acts on gradients
// (averaging across processes, adapter-only parameters) belongs here. With several processes the
// gradients are averaged before the update, and the ranks agree on every micro-step's batch.
import * as torch from '../torch/index.js';
import type { Batch } from '../data/loader.js';
import { batchToDevice } from './batch_inputs.js';
import { BadDataError } from './bad_rows.js';
import type { TrainState } from './recipe.js';
import type { DataParallel } from './data_parallel.js';
import { sampleSeed } from './draws.js';

/** What one update logs (train.py's names). */
export interface UpdateStats {
  train_loss: number;
  /** DPO only. */
  implicit_acc_accumulated?: number;
  model_mse_unaccumulated?: number;
  ref_mse_unaccumulated?: number;
  lr: number;
  /** Pairs (or SFT images) consumed. */
  pairs: number;
  /** Seconds spent waiting for the loader's batches. */
  dataWaitSeconds: number;
  /** Pairwise objectives: the implicit reward margin's mean and spread over the update's pairs (per process, averaged over processes). */
  reward_margin_mean?: number;
  reward_margin_std?: number;
  /** The last micro-step's MSEs of the preferred and dispreferred images, the trained model's and the reference's. */
  model_mse_w?: number;
  model_mse_l?: number;
  ref_mse_w?: number;
  ref_mse_l?: number;
  /** The global gradient norm before clipping (after unscaling with fp16). */
  grad_norm: number;
  /** Pairwise objectives: implicit accuracy of the update's pairs by timestep quarter (keys implicit_acc_t<lo>_<hi>), where the quarter had pairs. */
  accByTimestep?: Record<string, number>;
  /** The dataset rows of the update's batches (the loss-spike warning names them). */
  rows: number[];
}

export class NonFiniteLossError extends Error {}

/** Where each logged value sits in a micro-step's stats tensor (SFT: the loss alone). */
const STAT = { loss: 0, acc: 1, mse: 2, refMse: 3, marginMean: 4, marginStd: 5, mseW: 6, mseL: 7, refMseW: 8, refMseL: 9, buckets: 10 } as const;
/** Implicit accuracy is also counted per quarter of the training timesteps: [right, pairs] per quarter from STAT.buckets. */
const TIMESTEP_QUARTERS = 4;

/** Per timestep quarter, [pairs ranked right, pairs], as 2·quarters values on the device. */
function accuracyByTimestep(margin: torch.Tensor, pairTimesteps: torch.Tensor, numTrainTimesteps: number): torch.Tensor[] {
  const quarter = pairTimesteps.float().mul(TIMESTEP_QUARTERS / numTrainTimesteps).floor().clamp(0, TIMESTEP_QUARTERS - 1);
  const right = margin.gt(0).float();
  const out: torch.Tensor[] = [];
  for (let q = 0; q < TIMESTEP_QUARTERS; q++) {
    const inQuarter = quarter.eq(q).float();
    out.push(inQuarter.mul(right).sum(), inQuarter.sum());
  }
  return out;
}

/** The logged name of a timestep quarter: implicit_acc_t0_249, ... for T = 1000. */
function quarterName(q: number, numTrainTimesteps: number): string {
  const size = numTrainTimesteps / TIMESTEP_QUARTERS;
  return `implicit_acc_t${Math.ceil(q * size)}_${Math.ceil((q + 1) * size) - 1}`;
}

/**
 * Forward and backward of one batch; returns the STAT values as a tensor on the device, read by
 * the caller once per update: a host read per micro-step would make the CPU wait for the GPU
 * every time.
 */
function microStep(s: TrainState, batch: Batch): torch.Tensor {
  return torch.tidy(() => {
    const inputs = batchToDevice(batch, s.config.device);
    if (s.config.objective.sampleSeeds) inputs.sampleSeeds = batch.rows.map((row) => sampleSeed(s.signature.seed, batch.epoch, row));
    const r = s.step(inputs);
    const scaled = r.loss.div(s.config.batch.accumulation);
    (s.scaler ? s.scaler.scale(scaled) : scaled).backward();
    const d = r.preference;
    if (!d) return torch.stack([r.loss.float()]).keep();
    // without a reference model (MaPO) the reference slots hold NaN (made on the device: no upload) and are not logged
    const none = () => torch.full([], Number.NaN, { device: r.loss.device });
    const margin = d.margin.detach().float();
    const marginMean = margin.mean();
    return torch.stack([
      r.loss.float(), d.implicitAcc.float(), d.rawModelLoss.float(), d.rawRefLoss?.float() ?? none(),
      marginMean, margin.sub(marginMean).pow(2).mean().sqrt(), ...d.byPreference.model, ...(d.byPreference.ref ?? [none(), none()]),
      ...accuracyByTimestep(margin, r.marginTimesteps!, s.models.noise.config.numTrainTimesteps),
    ]).keep();
  });
}

/**
 * Unscales the gradients (fp16) and clips them (unless --use_adafactor); returns the global norm
 * before clipping as a 0-d tensor on the device, read with the update's stats (no extra sync).
 */
function unscaleAndClip(s: TrainState): torch.Tensor {
  return torch.tidy(() => {
    if (s.scaler) s.scaler.unscale_(s.optimizer);
    return torch.optim.clipGradNorm_(s.params, s.config.clipGradNorm ?? Number.POSITIVE_INFINITY).float().keep();
  });
}

function applyUpdate(s: TrainState): void {
  torch.tidy(() => {
    if (s.scaler) {
      s.scaler.step(s.optimizer);
      s.scaler.update();
    } else {
      s.optimizer.step();
    }
    // train.py builds the schedule with warmup and length times the process count and steps it
    // once per process (accelerate's prepared scheduler)
    for (let i = 0; i < s.config.batch.worldSize; i++) s.schedule.step();
    s.optimizer.zeroGrad();
  });
}

/**
 * The next batch of this update, moving on to the next epoch when one ends between updates; null
 * when the epoch ends inside the update or the run's epochs are exhausted.
 */
async function nextBatch(s: TrainState, firstOfUpdate: boolean): Promise<Batch | null> {
  const batch = await agreedBatch(s);
  if (batch || !firstOfUpdate || s.loader.state().epoch >= s.plan.maxEpochs) return batch;
  const next = await agreedBatch(s);
  if (!next) throw new BadDataError(`epoch ${s.loader.state().epoch} yielded no batch of ${s.config.batch.perDevice}: every row read was bad (counts: ${JSON.stringify(s.loader.badRows)})`);
  return next;
}

/**
 * The loader's next batch; with several processes, null on every rank unless every rank has one
 * (bad rows can end one rank's epoch early): all ranks then start the next epoch together, so
 * they always run the same number of micro-steps and collectives.
 */
async function agreedBatch(s: TrainState): Promise<Batch | null> {
  const batch = await s.loader.next();
  if (!s.dp || (await s.dp.all(batch !== null))) return batch;
  if (batch) s.loader.endEpoch();
  return null;
}

/**
 * The logged values of each micro-step, read from the device in one go; the tensors are freed. On
 * CUDA the wait for the device runs off the JS thread, so the next batches' host work (decoding
 * callbacks, crops, tokenising) proceeds while the GPU finishes the update's micro-steps.
 */
async function readStats(stats: torch.Tensor[], scalars: torch.Tensor[], device: torch.Device): Promise<{ values: number[][]; scalars: number[] }> {
  try {
    if (torch.deviceType(device) === 'cuda') await torch.cuda.synchronizeAsync(Number(device.split(':')[1] ?? 0));
    const flat = torch.tidy(() => torch.cat([torch.stack(stats).flatten(), ...scalars.map((t) => t.reshape([1]))]).toArray());
    const width = stats[0]!.shape[0]!;
    return { values: stats.map((_, k) => flat.slice(k * width, (k + 1) * width)), scalars: flat.slice(stats.length * width) };
  } finally {
    for (const t of [...stats, ...scalars]) t.dispose();
  }
}

async function averageAcrossRanks(dp: DataParallel, values: number[][]): Promise<number[][]> {
  const width = values[0]!.length;
  const sums = await dp.sum(values.flat());
  return values.map((_, k) => sums.slice(k * width, (k + 1) * width).map((v) => v / dp.size));
}

/** Runs one update; null when the run's epochs are exhausted before it could start. */
export async function runUpdate(s: TrainState): Promise<UpdateStats | null> {
  const accum = s.config.batch.accumulation;
  const pending: torch.Tensor[] = [];
  let pairs = 0;
  let dataWait = 0;
  const rows: number[] = [];
  try {
    while (pending.length < accum) {
      const t0 = performance.now();
      const batch = await nextBatch(s, pending.length === 0);
      dataWait += performance.now() - t0;
      if (!batch) break; // end of the epoch: update with what was accumulated (accelerate's end_of_dataloader)
      // the last planned micro-step's backward starts the gradient average (an update cut short by
      // the epoch's end averages after its backward instead)
      if (s.dp && pending.length === accum - 1) s.dp.armBeforeLastBackward(s.params);
      pending.push(microStep(s, batch));
      pairs += batch.shape[0];
      rows.push(...batch.rows);
    }
  } catch (e) {
    for (const t of pending) t.dispose();
    throw e;
  }
  if (pending.length === 0) return null;
  // gradients averaged across processes on update steps only (micro-steps accumulate locally, as DDP's no_sync)
  if (s.dp) await s.dp.averageGradients(s.params);
  // the norm is the same on every rank (the gradients are averaged)
  const norm = unscaleAndClip(s);
  // the update's one host read, before anything is applied: a non-finite loss leaves the weights as they were
  const read = await readStats(pending, [norm], s.config.device);
  let values = read.values;
  const gradNorm = read.scalars[0]!;
  // the logged values are the means over the processes (train.py gathers them); a NaN anywhere is a NaN everywhere
  if (s.dp) values = await averageAcrossRanks(s.dp, values);
  values.forEach((v, k) => {
    if (!Number.isFinite(v[STAT.loss]!) && !s.scaler) throw new NonFiniteLossError(`loss is ${v[STAT.loss]} at step ${s.progress.globalStep + 1} (micro-step ${k + 1})`);
  });
  applyUpdate(s);
  const out: UpdateStats = {
    train_loss: values.reduce((sum, v) => sum + v[STAT.loss]! / accum, 0), lr: s.schedule.getLastLr()[0]!, pairs, dataWaitSeconds: dataWait / 1000,
    grad_norm: gradNorm, rows,
  };
  if (s.config.objective.method === 'dpo') {
    // train.py accumulates the implicit accuracy and logs the last micro-step's MSEs ("unaccumulated")
    const last = values[values.length - 1]!;
    const mean = (k: number) => values.reduce((sum, v) => sum + v[k]! / values.length, 0);
    const withRef = !Number.isNaN(last[STAT.refMse]!);
    Object.assign(out, {
      model_mse_unaccumulated: last[STAT.mse]!, ...(withRef ? { ref_mse_unaccumulated: last[STAT.refMse]! } : {}),
      implicit_acc_accumulated: values.reduce((sum, v) => sum + v[STAT.acc]! / accum, 0),
      reward_margin_mean: mean(STAT.marginMean), reward_margin_std: mean(STAT.marginStd),
    });
    // per preference group; a group the last micro-step had no image of (KTO on single images) is left out
    const groups = { model_mse_w: STAT.mseW, model_mse_l: STAT.mseL, ...(withRef ? { ref_mse_w: STAT.refMseW, ref_mse_l: STAT.refMseL } : {}) };
    for (const [k, i] of Object.entries(groups)) if (Number.isFinite(last[i])) (out as unknown as Record<string, number>)[k] = last[i]!;
    const T = s.models.noise.config.numTrainTimesteps;
    const byQuarter: Record<string, number> = {};
    for (let q = 0; q < TIMESTEP_QUARTERS; q++) {
      const right = values.reduce((sum, v) => sum + v[STAT.buckets + 2 * q]!, 0);
      const count = values.reduce((sum, v) => sum + v[STAT.buckets + 2 * q + 1]!, 0);
      if (count > 0) byQuarter[quarterName(q, T)] = right / count;
    }
    out.accByTimestep = byQuarter;
  }
  return out;
}
