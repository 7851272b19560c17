// kind "lr_schedule": diffusers.optimization.get_scheduler lr sequences over 101 steps.
import * as torch from '../../torch/index.js';
import type { FixtureCase } from '../case.js';
import { compareNumbers, type Comparison } from '../compare.js';

interface LrCaseJson {
  base_lr: number;
  num_warmup_steps: number;
  num_training_steps: number;
  schedules: { name: string; extra_kwargs: Record<string, unknown>; lr: number[] }[];
  tolerance: { atol: number; rtol: number };
}

export function runLrScheduleCase(c: FixtureCase): Comparison[] {
  const j = c.json as unknown as LrCaseJson;
  return j.schedules.map((s) => {
    const p = torch.zeros([1]).requiresGrad_(true).keep();
    const opt = new torch.optim.AdamW([p], { lr: j.base_lr });
    try {
      const sched = torch.optim.getScheduler(s.name as torch.optim.ScheduleName, opt, {
        numWarmupSteps: j.num_warmup_steps,
        numTrainingSteps: j.num_training_steps,
        ...(s.extra_kwargs.num_cycles !== undefined ? { numCycles: s.extra_kwargs.num_cycles as number } : {}),
        ...(s.extra_kwargs.power !== undefined ? { power: s.extra_kwargs.power as number } : {}),
        ...(s.extra_kwargs.step_rules !== undefined ? { stepRules: s.extra_kwargs.step_rules as string } : {}),
      });
      const lrs: number[] = [];
      for (let k = 0; k < s.lr.length; k++) {
        lrs.push(sched.getLastLr()[0]!);
        sched.step();
      }
      const label = `${s.name}${Object.keys(s.extra_kwargs).length ? JSON.stringify(s.extra_kwargs) : ''}`;
      return compareNumbers(label, lrs, s.lr, j.tolerance);
    } finally {
      opt.dispose();
      p.dispose();
    }
  });
}
