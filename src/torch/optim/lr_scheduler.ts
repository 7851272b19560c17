// The learning-rate schedules of diffusers.optimization.get_scheduler (diffusers 0.20), as
// LambdaLR multipliers of each group's initial lr. step() is called once per optimizer update;
// getLastLr() is the lr the next update uses.
import type { Optimizer } from './optimizer.js';

export type ScheduleName = 'linear' | 'cosine' | 'cosine_with_restarts' | 'polynomial' | 'constant' | 'constant_with_warmup' | 'piecewise_constant';
export const SCHEDULE_NAMES: readonly ScheduleName[] = ['linear', 'cosine', 'cosine_with_restarts', 'polynomial', 'constant', 'constant_with_warmup', 'piecewise_constant'];

export interface ScheduleOptions {
  numWarmupSteps?: number;
  numTrainingSteps?: number;
  /** cosine: 0.5 unless given; cosine_with_restarts: get_scheduler passes 1. */
  numCycles?: number;
  /** polynomial decay power (get_scheduler default 1.0). */
  power?: number;
  /** polynomial final lr (default 1e-7). */
  lrEnd?: number;
  /** piecewise_constant rules, e.g. "1:10,0.1:20,0.01:30,0.005" (multiplier:until-step, ..., last multiplier). */
  stepRules?: string;
}

/** The multiplier lambda(step) of a schedule, exactly as diffusers computes it. */
export function scheduleLambda(name: ScheduleName, o: ScheduleOptions, initialLr: number): (step: number) => number {
  const warmup = o.numWarmupSteps;
  const total = o.numTrainingSteps;
  const needWarmup = () => {
    if (warmup === undefined) throw new Error(`${name} requires \`num_warmup_steps\`, please provide that argument.`);
    return warmup;
  };
  const needTotal = () => {
    if (total === undefined) throw new Error(`${name} requires \`num_training_steps\`, please provide that argument.`);
    return total;
  };
  switch (name) {
    case 'constant':
      return () => 1.0;
    case 'constant_with_warmup': {
      const w = needWarmup();
      return (s) => (s < w ? s / Math.max(1.0, w) : 1.0);
    }
    case 'linear': {
      const w = needWarmup();
      const t = needTotal();
      return (s) => (s < w ? s / Math.max(1, w) : Math.max(0.0, (t - s) / Math.max(1, t - w)));
    }
    case 'cosine': {
      const w = needWarmup();
      const t = needTotal();
      const cycles = o.numCycles ?? 0.5;
      return (s) => {
        if (s < w) return s / Math.max(1, w);
        const progress = (s - w) / Math.max(1, t - w);
        return Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * cycles * 2.0 * progress)));
      };
    }
    case 'cosine_with_restarts': {
      const w = needWarmup();
      const t = needTotal();
      const cycles = o.numCycles ?? 1;
      return (s) => {
        if (s < w) return s / Math.max(1, w);
        const progress = (s - w) / Math.max(1, t - w);
        if (progress >= 1.0) return 0.0;
        return Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * ((cycles * progress) % 1.0))));
      };
    }
    case 'polynomial': {
      const w = needWarmup();
      const t = needTotal();
      const lrEnd = o.lrEnd ?? 1e-7;
      const power = o.power ?? 1.0;
      if (!(initialLr > lrEnd)) throw new Error(`lr_end (${lrEnd}) must be be smaller than initial lr (${initialLr})`);
      return (s) => {
        if (s < w) return s / Math.max(1, w);
        if (s > t) return lrEnd / initialLr;
        const lrRange = initialLr - lrEnd;
        const decaySteps = t - w;
        const pctRemaining = 1 - (s - w) / decaySteps;
        const decay = lrRange * pctRemaining ** power + lrEnd;
        return decay / initialLr;
      };
    }
    case 'piecewise_constant': {
      if (!o.stepRules) throw new Error('piecewise_constant requires `step_rules`');
      const parts = o.stepRules.split(',');
      const rules = parts.slice(0, -1).map((r) => {
        const [mult, until] = r.split(':');
        return { until: Number.parseInt(until!, 10), mult: Number.parseFloat(mult!) };
      });
      const last = Number.parseFloat(parts[parts.length - 1]!);
      if (rules.some((r) => !Number.isFinite(r.until) || !Number.isFinite(r.mult)) || !Number.isFinite(last)) {
        throw new Error(`invalid step_rules '${o.stepRules}'`);
      }
      return (s) => {
        for (const r of rules) if (s < r.until) return r.mult;
        return last;
      };
    }
    default:
      throw new Error(`unknown lr scheduler '${String(name)}' (expected one of ${SCHEDULE_NAMES.join(', ')})`);
  }
}

export class LRScheduler {
  #lastEpoch = 0;
  readonly #lambdas: ((s: number) => number)[];

  constructor(readonly optimizer: Optimizer<{ lr: number }>, readonly name: ScheduleName, readonly options: ScheduleOptions = {}) {
    this.#lambdas = optimizer.paramGroups.map((g) => scheduleLambda(name, options, g.initialLr));
    this.#apply();
  }

  #apply(): void {
    this.optimizer.paramGroups.forEach((g, i) => {
      g.hyper.lr = g.initialLr * this.#lambdas[i]!(this.#lastEpoch);
    });
  }

  /** Advances one optimizer update. */
  step(): void {
    this.#lastEpoch += 1;
    this.#apply();
  }

  getLastLr(): number[] {
    return this.optimizer.paramGroups.map((g) => g.hyper.lr);
  }

  get lastEpoch(): number {
    return this.#lastEpoch;
  }

  stateDict(): { name: ScheduleName; lastEpoch: number; options: ScheduleOptions } {
    return { name: this.name, lastEpoch: this.#lastEpoch, options: { ...this.options } };
  }

  loadStateDict(sd: { name: ScheduleName; lastEpoch: number }): void {
    if (sd.name !== this.name) throw new Error(`lr schedule state is for '${sd.name}', not '${this.name}'`);
    this.#lastEpoch = sd.lastEpoch;
    this.#apply();
  }
}

/** diffusers.optimization.get_scheduler (cosine_with_restarts gets numCycles 1 and polynomial power 1 as there). */
export function getScheduler(name: ScheduleName, optimizer: Optimizer<{ lr: number }>, o: ScheduleOptions = {}): LRScheduler {
  const opts = { ...o };
  if (name === 'cosine_with_restarts') opts.numCycles ??= 1;
  if (name === 'polynomial') opts.power ??= 1.0;
  return new LRScheduler(optimizer, name, opts);
}
