// Every sampler's timestep table against diffusers 0.20's, for every timestep_spacing and step
// count in {1..50, 100, 250, 500, 999, 1000} on SD 1.5's scheduler config: timesteps exactly,
// and for the Euler samplers the float32 sigmas and init_noise_sigma exactly. The expected values
// come from diffusers 0.20 itself (test/fixtures/schedulers/make_timestep_grid.py).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createScheduler, type SchedulerName } from '../src/schedulers/samplers.js';
import { testFixtures } from './helpers/fixtures.js';

interface GridCase {
  scheduler: string;
  spacing: string;
  steps: number;
  timesteps: number[];
  sigmas?: number[];
  init_noise_sigma?: number;
}

const grid = JSON.parse(readFileSync(join(testFixtures, 'schedulers', 'timestep_grid.json'), 'utf8')) as { config: Record<string, unknown>; cases: GridCase[] };

describe('sampler timestep tables against diffusers 0.20', () => {
  const groups = new Map<string, GridCase[]>();
  for (const c of grid.cases) {
    const key = `${c.scheduler} ${c.spacing}`;
    groups.set(key, [...(groups.get(key) ?? []), c]);
  }
  for (const [key, cases] of groups) {
    test(key, () => {
      const [name, spacing] = key.split(' ') as [string, string];
      const s = createScheduler(name as SchedulerName, { ...grid.config, timestep_spacing: spacing });
      const wrong: string[] = [];
      for (const c of cases) {
        s.setTimesteps(c.steps);
        if (JSON.stringify(s.timesteps) !== JSON.stringify(c.timesteps)) {
          const i = c.timesteps.findIndex((t, k) => s.timesteps[k] !== t);
          wrong.push(`${c.steps} steps: timestep ${i} is ${s.timesteps[i]}, diffusers ${c.timesteps[i]} (${s.timesteps.length} vs ${c.timesteps.length} timesteps)`);
          continue;
        }
        if (c.sigmas) {
          const sigmas = (s as unknown as { sigmas: number[] }).sigmas;
          const i = c.sigmas.findIndex((x, k) => sigmas[k] !== x);
          if (i >= 0 || sigmas.length !== c.sigmas.length) wrong.push(`${c.steps} steps: sigma ${i} is ${sigmas[i]}, diffusers ${c.sigmas[i]}`);
          else if (s.initNoiseSigma !== c.init_noise_sigma) wrong.push(`${c.steps} steps: init_noise_sigma ${s.initNoiseSigma}, diffusers ${c.init_noise_sigma}`);
        }
      }
      s.dispose();
      assert.deepEqual(wrong, [], `${key}: ${wrong.length} of ${cases.length} step counts differ`);
    });
  }
});
