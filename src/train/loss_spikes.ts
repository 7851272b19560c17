// A loss-spike detector: an update whose loss is far above the recent ones (more than `sigmas`
// standard deviations over the mean of a trailing window) is reported with its step and the dataset
// rows of its batches, so a bad row, a learning-rate problem or an instability can be found while the
// run goes on. The window holds the last `window` updates' losses (a spike joins it: a lasting level
// shift stops being reported once the window has adapted), and nothing is judged before `warmup`
// updates. DPO losses move slowly around log 2; a single bad batch shows as a jump of many σ.
export interface LossSpike {
  step: number;
  loss: number;
  mean: number;
  std: number;
  rows: number[];
}

export class LossSpikeDetector {
  readonly #losses: number[] = [];
  constructor(readonly o: { window: number; warmup: number; sigmas: number } = { window: 100, warmup: 20, sigmas: 6 }) {}

  /** Records an update's loss; returns the spike when it is one. A non-finite loss is not judged here (the run stops on it). */
  observe(step: number, loss: number, rows: number[]): LossSpike | null {
    if (!Number.isFinite(loss)) return null;
    const w = this.#losses;
    let spike: LossSpike | null = null;
    if (w.length >= this.o.warmup) {
      const mean = w.reduce((a, b) => a + b, 0) / w.length;
      const std = Math.sqrt(w.reduce((a, b) => a + (b - mean) ** 2, 0) / w.length);
      if (std > 0 && loss > mean + this.o.sigmas * std) spike = { step, loss, mean, std, rows };
    }
    w.push(loss);
    if (w.length > this.o.window) w.shift();
    return spike;
  }
}

/** The warning for a spike; `ranks` > 1: the rows named are rank 0's share of the update. */
export function describeSpike(s: LossSpike, ranks = 1): string {
  const rows = s.rows.slice(0, 16).join(', ') + (s.rows.length > 16 ? `, ... (${s.rows.length} rows)` : '');
  return `WARNING: loss spike at step ${s.step}: ${s.loss.toFixed(4)}, ${((s.loss - s.mean) / s.std).toFixed(1)} σ above the last updates' mean ` +
    `${s.mean.toFixed(4)} (σ ${s.std.toExponential(2)}); the update's dataset rows${ranks > 1 ? ` on rank 0 (of ${ranks} processes)` : ''}: ${rows} ('diffusion-dpo data SOURCE --dump' shows rows; 'train --exclude_rows' leaves them out)`;
}
