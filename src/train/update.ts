// One optimizer update, as train.py's loop body runs it under accelerate: micro-steps accumulate
// gradients (each loss divided by the accumulation count, as accelerator.backward does) until
// `gradient_accumulation_steps` batches are in, or the epoch ends (accelerate then updates with
// what it has); then the gradients are unscaled (fp16), clipped (unless --use_adafactor), applied,
// the LR schedule steps once per process, and the gradients are zeroed.
//
// Backward is where the trained model's gradients appear (gradient checkpointing replays its
// segments there), and the update is the one place they are read: what acts on gradients
// (reduction across processes, adapter-only parameters) belongs here.
import * as torch from '../torch/index.js';
import type { Batch } from '../data/loader.js';
import { BadDataError } from './bad_rows.js';
import type { TrainState } from './recipe.js';

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
}

export class NonFiniteLossError extends Error {}

/** Forward and backward of one batch; returns [loss, implicit acc, model mse, ref mse] (DPO) or [loss]. */
function microStep(s: TrainState, batch: Batch): number[] {
  return torch.tidy(() => {
    const r = s.step({
      pixelValues: torch.fromTypedArray(batch.pixelValues, [...batch.shape]),
      inputIds: batch.inputIds ? torch.tensor(batch.inputIds, { dtype: 'int64' }) : undefined,
      captions: batch.captions,
    });
    const scaled = r.loss.div(s.config.batch.accumulation);
    (s.scaler ? s.scaler.scale(scaled) : scaled).backward();
    // one host read per micro-step, for the logs (as train.py's .item() calls)
    const d = r.dpo;
    return torch.stack([r.loss.float(), ...(d ? [d.implicitAcc, d.rawModelLoss.float(), d.rawRefLoss.float()] : [])]).toArray();
  });
}

function applyUpdate(s: TrainState): void {
  torch.tidy(() => {
    if (s.scaler) s.scaler.unscale_(s.optimizer);
    if (s.config.clipGradNorm !== null) torch.optim.clipGradNorm_(s.params, s.config.clipGradNorm);
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
  const batch = await s.loader.next();
  if (batch || !firstOfUpdate || s.loader.state().epoch >= s.plan.maxEpochs) return batch;
  const next = await s.loader.next();
  if (!next) throw new BadDataError(`epoch ${s.loader.state().epoch} yielded no batch of ${s.config.batch.perDevice}: every row read was bad (counts: ${JSON.stringify(s.loader.badRows)})`);
  return next;
}

/** Runs one update; null when the run's epochs are exhausted before it could start. */
export async function runUpdate(s: TrainState): Promise<UpdateStats | null> {
  const accum = s.config.batch.accumulation;
  const dpo = s.config.objective.method === 'dpo';
  let micro = 0;
  let pairs = 0;
  let loss = 0;
  let acc = 0;
  let modelMse = 0;
  let refMse = 0;
  while (micro < accum) {
    const batch = await nextBatch(s, micro === 0);
    if (!batch) break; // end of the epoch: update with what was accumulated (accelerate's end_of_dataloader)
    const v = microStep(s, batch);
    if (!Number.isFinite(v[0]!) && !s.scaler) throw new NonFiniteLossError(`loss is ${v[0]} at step ${s.progress.globalStep + 1}`);
    micro++;
    pairs += batch.shape[0];
    loss += v[0]! / accum;
    if (dpo) {
      acc += v[1]! / accum;
      modelMse = v[2]!;
      refMse = v[3]!;
    }
  }
  if (micro === 0) return null;
  applyUpdate(s);
  const stats: UpdateStats = { train_loss: loss, lr: s.schedule.getLastLr()[0]!, pairs };
  if (dpo) Object.assign(stats, { model_mse_unaccumulated: modelMse, ref_mse_unaccumulated: refMse, implicit_acc_accumulated: acc });
  return stats;
}
