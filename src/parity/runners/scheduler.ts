// kind "scheduler_rollout": a scheduler's timestep (and sigma) tables for several step counts, and
// a 4-step rollout driven by recorded "model outputs", with the generator seeded as the case says.
import * as torch from '../../torch/index.js';
import { schedulerFromConfig, type Scheduler } from '../../schedulers/samplers.js';
import type { FixtureCase } from '../case.js';
import { compareNumbers, compareTensors, type Comparison } from '../compare.js';

interface RolloutCase {
  scheduler_class: string;
  config: Record<string, unknown>;
  set_timesteps: Record<string, { timesteps: number[]; sigmas?: number[]; init_noise_sigma: number }>;
  rollout_num_inference_steps: number;
  generator_seed: number;
  tolerance: { atol: number; rtol: number };
  description: string;
}

export function runSchedulerCase(c: FixtureCase): Comparison[] {
  const j = c.json as unknown as RolloutCase;
  const raw = { ...j.config, _class_name: j.scheduler_class };
  const tol = j.tolerance;
  const out: Comparison[] = [];
  const make = (): Scheduler => schedulerFromConfig(raw);
  for (const [n, table] of Object.entries(j.set_timesteps)) {
    const s = make();
    s.setTimesteps(Number(n));
    out.push(compareNumbers(`timesteps(${n})`, s.timesteps, table.timesteps, { atol: 1e-9, rtol: 0 }));
    out.push(compareNumbers(`init_noise_sigma(${n})`, [s.initNoiseSigma], [table.init_noise_sigma], tol));
    const sig = (s as { sigmas?: number[] }).sigmas;
    if (table.sigmas && sig && !('karras' in s)) out.push(compareNumbers(`sigmas(${n})`, sig, table.sigmas, tol));
    s.dispose();
  }
  const s = make();
  s.setTimesteps(j.rollout_num_inference_steps);
  const eta = /"eta": ([\d.]+)/.exec(j.description)?.[1];
  const generator = new torch.Generator('cpu', j.generator_seed);
  let x = c.tensor('x_T').mul(s.initNoiseSigma).keep();
  const outputs = c.tensor('model_outputs');
  s.timesteps.forEach((t, i) => {
    torch.tidy(() => {
      const input = s.scaleModelInput(x, t);
      out.push(compareTensors(`step${i}.model_input`, input, c.tensor(`step${i}.model_input`), tol));
      const r = s.step(outputs.select(0, i), t, x, { generator, ...(eta ? { eta: Number(eta) } : {}) });
      out.push(compareTensors(`step${i}.prev_sample`, r.prevSample, c.tensor(`step${i}.prev_sample`), tol));
      if (r.predOriginalSample && c.has(`step${i}.pred_original_sample`)) {
        out.push(compareTensors(`step${i}.pred_original_sample`, r.predOriginalSample, c.tensor(`step${i}.pred_original_sample`), tol));
      }
      x.dispose();
      x = r.prevSample.keep();
    });
  });
  x.dispose();
  s.dispose();
  return out;
}
