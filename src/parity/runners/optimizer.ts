// kind "optimizer": N steps of AdamW or Adafactor from given initial params and gradients.
import * as torch from '../../torch/index.js';
import type { FixtureCase } from '../case.js';
import { compareTensors, type Comparison } from '../compare.js';
import { UnsupportedCase } from './errors.js';

interface OptimizerCaseJson {
  optimizer: string;
  kwargs: Record<string, unknown>;
  shapes: number[][];
}

function build(name: string, params: torch.Tensor[], kw: Record<string, unknown>): torch.optim.Optimizer<{ lr: number }> {
  if (name === 'AdamW') {
    return new torch.optim.AdamW(params, {
      lr: kw.lr as number, betas: kw.betas as [number, number], eps: kw.eps as number, weightDecay: kw.weight_decay as number,
    });
  }
  if (name === 'Adafactor') {
    return new torch.optim.Adafactor(params, {
      lr: kw.lr as number | null, weightDecay: kw.weight_decay as number, clipThreshold: kw.clip_threshold as number,
      scaleParameter: kw.scale_parameter as boolean, relativeStep: kw.relative_step as boolean, warmupInit: kw.warmup_init as boolean,
      ...(kw.eps ? { eps: kw.eps as [number, number] } : {}),
      ...(kw.decay_rate !== undefined ? { decayRate: kw.decay_rate as number } : {}),
      ...(kw.beta1 !== undefined ? { beta1: kw.beta1 as number | null } : {}),
    });
  }
  throw new UnsupportedCase(`optimizer '${name}'`);
}

export function runOptimizerCase(c: FixtureCase): Comparison[] {
  const j = c.json as unknown as OptimizerCaseJson;
  const params = j.shapes.map((_, i) => c.tensor(`init.p${i}`).requiresGrad_(true).keep());
  const opt = build(j.optimizer, params, j.kwargs);
  const results: Comparison[] = [];
  try {
    for (let k = 0; c.has(`grads.step${k}.p0`); k++) {
      torch.tidy(() => {
        params.forEach((p, i) => (p.grad = c.tensor(`grads.step${k}.p${i}`)));
        opt.step();
        params.forEach((p, i) => {
          const name = `params.step${k}.p${i}`;
          const tol = c.tolerance(name);
          if (!tol) throw new Error(`${c.name}: no tolerance for ${name}`);
          results.push(compareTensors(name, p, c.tensor(name), tol));
        });
      });
    }
  } finally {
    opt.dispose();
    for (const p of params) {
      p.grad = null;
      p.dispose();
    }
  }
  return results;
}
