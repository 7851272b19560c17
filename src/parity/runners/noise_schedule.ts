// kind "scheduler_add_noise": the DDPM training schedule (betas, alphas_cumprod), add_noise, and
// the turbo zero-terminal-SNR rescale.
import * as torch from '../../torch/index.js';
import { NoiseSchedule, parseNoiseScheduleConfig } from '../../schedulers/noise_schedule.js';
import type { FixtureCase } from '../case.js';
import { compareTensors, type Comparison } from '../compare.js';

export function runAddNoiseCase(c: FixtureCase): Comparison[] {
  const j = c.json as unknown as { scheduler_config: Record<string, unknown>; timesteps: number[]; turbo_timesteps: number[] };
  const out: Comparison[] = [];
  const check = (name: string, t: torch.Tensor) => out.push(compareTensors(name, t, c.tensor(name), c.tolerance(name) ?? { atol: 1e-6, rtol: 1e-5 }));
  const s = new NoiseSchedule(parseNoiseScheduleConfig(j.scheduler_config));
  try {
    check('betas', s.betas);
    check('alphas_cumprod', s.alphasCumprod);
    const latents = c.tensor('latents');
    const noise = c.tensor('noise');
    check('noisy', s.addNoise(latents, noise, torch.tensor(j.timesteps, { dtype: 'int64' })));
    s.enforceZeroTerminalSnr();
    check('alphas_cumprod_turbo', s.alphasCumprod);
    check('noisy_turbo', s.addNoise(latents, noise, torch.tensor(j.turbo_timesteps, { dtype: 'int64' })));
  } finally {
    s.dispose();
  }
  return out;
}
