// DDIM-inversion noising (InPO): the inversion's arithmetic on a predictor with a known answer, the
// reconstruction of x₀ by inverting then sampling back on the tiny SD UNet (error stated and
// shrinking with the step count), and `train --noising ddim_inversion` end to end.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { loadUNet } from '../src/models/index.js';
import { loadNoiseScheduleConfig, NoiseSchedule } from '../src/schedulers/noise_schedule.js';
import { ddimDenoise, ddimInvert } from '../src/schedulers/ddim_inversion.js';
import { parseTrainArgs } from '../src/train/args.js';
import { resolveTrainConfig } from '../src/train/config.js';
import { fixturesDir } from './helpers/fixtures.js';
import { metricsRows, runTrain, tinyTrainingSetup } from './helpers/train_cli.js';

const schedule = new NoiseSchedule(loadNoiseScheduleConfig(join(fixturesDir, 'tiny-sd', 'scheduler')));
after(() => schedule.dispose());
const rel = (a: torch.Tensor, b: torch.Tensor) => torch.tidy(() => a.sub(b).pow(2).mean().sqrt().item() / b.pow(2).mean().sqrt().item());

describe('the inversion', () => {
  test('with a constant noise estimate ε*, x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε* exactly and the implied noise is ε*, for any step count and per-sample t', () => {
    torch.tidy(() => {
      torch.manualSeed(0);
      const x0 = torch.randn([3, 4, 5, 5]);
      const eps = torch.randn([3, 4, 5, 5]);
      const t = torch.tensor([0, 317, 999], { dtype: 'int64' });
      const ac = schedule.alphasCumprodOn('cpu');
      const expected = schedule.addNoise(x0, eps, t);
      for (const steps of [1, 3, 10]) {
        const inv = ddimInvert(() => eps, x0, t, ac, { steps });
        assert.ok(rel(inv.noisy, expected) < 1e-5, `steps ${steps}: ${rel(inv.noisy, expected)}`);
        assert.ok(rel(inv.noise, eps) < 1e-4, `steps ${steps}: ${rel(inv.noise, eps)}`);
      }
    });
  });

  test('the model is asked for ε at the grid points τ_k = round(k·t/N) of each sample, from the clean image up', () => {
    torch.tidy(() => {
      const asked: number[][] = [];
      const x0 = torch.zeros([2, 1, 1, 1]);
      ddimInvert((x, tau) => {
        asked.push(tau.toArray());
        return torch.zerosLike(x);
      }, x0, torch.tensor([10, 999], { dtype: 'int64' }), schedule.alphasCumprodOn('cpu'), { steps: 4 });
      // rounded half to even, as torch.round: 2.5 -> 2, 7.5 -> 8
      assert.deepEqual(asked, [[0, 0], [2, 250], [5, 500], [8, 749]]);
    });
  });

  test('inverting then sampling back with DDIM reconstructs x₀ on the tiny SD UNet: at t = 500 within 6% (RMS) with 32 steps, 2% with 128, better with more steps', () => {
    const unet = loadUNet(join(fixturesDir, 'tiny-sd', 'unet'));
    try {
      torch.tidy(() => {
        torch.manualSeed(1);
        const x0 = torch.randn([1, 4, 4, 4]);
        const ehs = torch.randn([1, 7, 32]);
        const t = torch.tensor([500], { dtype: 'int64' });
        const ac = schedule.alphasCumprodOn('cpu');
        const predict = (x: torch.Tensor, tau: torch.Tensor) => unet.forward(x, tau, ehs).sample;
        const errors = [8, 32, 128].map((steps) => torch.noGrad(() => {
          const inv = ddimInvert(predict, x0, t, ac, { steps });
          return rel(ddimDenoise(predict, inv.noisy, t, ac, { steps }), x0);
        }));
        assert.ok(errors[1]! < 0.06 && errors[2]! < 0.02, errors.join());
        assert.ok(errors[2]! < errors[1]! && errors[1]! < errors[0]!, `the error shrinks with the step count: ${errors.join()}`);
      });
    } finally {
      unet.dispose();
    }
  });
});

describe('train --noising ddim_inversion', () => {
  const { dir, flags } = tinyTrainingSetup('dpo-inversion-', ['--train_batch_size', '2', '--max_train_steps', '2', '--learning_rate', '1e-3', '--noising', 'ddim_inversion', '--inversion_steps', '3']);

  for (const extra of [[], ['--inversion_model', 'trained', '--inversion_eta', '0.1'], ['--lora_rank', '4'], ['--loss_type', 'mapo', '--inversion_model', 'trained']]) {
    test(`trains ${extra.join(' ') || 'with the reference inverting'}`, async () => {
      const out = join(dir, extra.join('_') || 'reference');
      const r = await runTrain(flags(out, extra));
      assert.equal(r.code, 0, r.err);
      assert.match(r.err, /noising: DDIM inversion of x0 in 3 steps/);
      const rows = metricsRows(out);
      assert.equal(rows.length, 2);
      assert.ok(rows.every((x) => Number.isFinite(x.train_loss)));
      if (extra.includes('mapo')) return;
      // at the first update the trained model is the reference: the sigmoid loss is log 2
      assert.ok(Math.abs(rows[0]!.train_loss! - Math.LN2) < 1e-5, `${rows[0]!.train_loss}`);
    });
  }

  test('flags: inversion options without inversion, fresh-noise options with it, and a reference inversion without a reference are refused', () => {
    const resolve = (args: string[]) => resolveTrainConfig(parseTrainArgs(['--pretrained_model_name_or_path', 'm', '--dataset_name', 'd', ...args]), { env: {}, cudaDevices: 0 });
    assert.throws(() => resolve(['--inversion_steps', '5']), /--inversion_steps applies to --noising ddim_inversion/);
    assert.throws(() => resolve(['--noising', 'ddim_inversion', '--noise_offset', '0.1']), /--noise_offset changes the fresh noise/);
    assert.throws(() => resolve(['--noising', 'ddim_inversion', '--loss_type', 'mapo']), /MaPO does not load: add --inversion_model trained/);
    assert.deepEqual(resolve(['--noising', 'ddim_inversion']).objective.noising, { kind: 'ddim_inversion', steps: 10, eta: 0, model: 'reference' });
  });
});
