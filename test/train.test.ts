// The DPO objective as a pure function (values worked by hand from the formula in
// src/train/dpo_loss.ts, i.e. train.py's loss block), the training noise schedule, and the
// step's mixed-precision scope.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { loadNoiseScheduleConfig, NoiseSchedule } from '../src/schedulers/noise_schedule.js';
import { dpoLoss, sftLoss } from '../src/train/dpo_loss.js';
import { createDiffusionStep, type DiffusionModels } from '../src/train/step.js';
import { disposePipeline, loadPipeline, loadUNet } from '../src/models/index.js';
import { assertClose, noLeak } from './helpers/assert.js';
import { fixturesDir } from './helpers/fixtures.js';

describe('dpoLoss', () => {
  test('a worked example: one pair where the model improved on the preferred image', () => noLeak(() => torch.tidy(() => {
    // [2B, 1, 1, 2] with B = 1: sample 0 preferred (w), sample 1 dispreferred (l); target zero
    const target = torch.zeros([2, 1, 1, 2]);
    const model = torch.tensor([0.1, 0.1, 0.3, 0.3]).reshape(2, 1, 1, 2); // mse_w 0.01, mse_l 0.09
    const ref = torch.tensor([0.2, 0.2, 0.3, 0.3]).reshape(2, 1, 1, 2); //   mse_w 0.04, mse_l 0.09
    const out = dpoLoss(model, ref, target, 10);
    // model_diff = 0.01 - 0.09 = -0.08; ref_diff = 0.04 - 0.09 = -0.05
    // inside = -0.5 * 10 * (-0.08 - -0.05) = 0.15; loss = -log(sigmoid(0.15)) = log(1 + e^-0.15)
    assertClose(out.modelDiff, [-0.08], 1e-7);
    assertClose(out.refDiff, [-0.05], 1e-7);
    assertClose(out.insideTerm, [0.15], 1e-6);
    assertClose([out.loss.item()], [Math.log(1 + Math.exp(-0.15))], 1e-6);
    assert.equal(out.implicitAcc.item(), 1);
    assertClose([out.rawModelLoss.item()], [0.05], 1e-7); // 0.5 * (0.01 + 0.09)
    assertClose([out.rawRefLoss.item()], [0.065], 1e-7); // mean(0.04, 0.09)
    // only the trained model's prediction gets a gradient
    const m = model.detach().requiresGrad_();
    const r = ref.detach().requiresGrad_();
    dpoLoss(m, r, target, 10).loss.backward();
    assert.ok(m.grad !== null);
    assert.equal(r.grad, null);
  })));

  test('equal model and reference give log 2 and accuracy 0; SFT is plain MSE', () => noLeak(() => torch.tidy(() => {
    const x = torch.randn([4, 4, 2, 2], { generator: new torch.Generator('cpu', 1) });
    const t = torch.randn([4, 4, 2, 2], { generator: new torch.Generator('cpu', 2) });
    const out = dpoLoss(x, x, t, 5000);
    assertClose([out.loss.item()], [Math.LN2], 1e-6);
    assert.equal(out.implicitAcc.item(), 0);
    assertClose([sftLoss(x, t).item()], [x.sub(t).pow(2).mean().item()], 1e-7);
  })));
});

describe('noise schedule', () => {
  test("SD1.5's scaled_linear betas, add_noise, and the zero-terminal-SNR rescale", () => noLeak(() => torch.tidy(() => {
    const s = new NoiseSchedule(loadNoiseScheduleConfig(join(fixturesDir, 'tiny-sd', 'scheduler')));
    // betas = linspace(sqrt(0.00085), sqrt(0.012), 1000)^2
    assertClose([s.betas.select(0, 0).item(), s.betas.select(0, 999).item()], [0.00085, 0.012], 1e-9, 1e-5);
    const x = torch.ones([2, 1, 1, 1]);
    const n = torch.zeros([2, 1, 1, 1]);
    const noisy = s.addNoise(x, n, torch.tensor([0, 999], { dtype: 'int64' }));
    assertClose(noisy, [Math.sqrt(s.alphasCumprod.select(0, 0).item()), Math.sqrt(s.alphasCumprod.select(0, 999).item())], 1e-7);
    s.enforceZeroTerminalSnr();
    assert.ok(Math.abs(s.alphasCumprod.select(0, 999).item()) < 1e-12, 'no signal left at the last timestep');
    assertClose([s.alphasCumprod.select(0, 0).item()], [1 - 0.00085], 1e-7, 1e-5);
    s.dispose();
  })));
});

describe('the step under mixed precision', () => {
  test('as accelerate: only the trained UNet runs under autocast, its output cast to float32; frozen models in their dtype', () => torch.tidy(() => {
    const folder = join(fixturesDir, 'tiny-sd');
    const p = loadPipeline(folder);
    const ref = loadUNet(join(folder, 'unet'), { dtype: 'bfloat16' }).requiresGrad_(false).eval();
    p.vae.to('bfloat16').requiresGrad_(false);
    p.textEncoder!.to('bfloat16').requiresGrad_(false);
    const noise = new NoiseSchedule(loadNoiseScheduleConfig(join(folder, 'scheduler')));
    const models: DiffusionModels = { kind: 'sd', unet: p.unet, refUnet: ref, vae: p.vae, textEncoder: p.textEncoder, textEncoder2: null, tokenizer: null, tokenizer2: null, noise };
    const autocast = { device: 'cpu', dtype: 'bfloat16' } as const;
    const step = createDiffusionStep(models, {
      method: 'dpo', betaDpo: 5000, noiseOffset: 0, inputPerturbation: 0, timestepMode: 'default', resolution: 32, weightDtype: 'bfloat16', autocast,
    });
    const g = new torch.Generator('cpu', 3);
    torch.manualSeed(0);
    const r = step({ pixelValues: torch.rand([1, 6, 32, 32], { generator: g }).mul(2).sub(1), inputIds: torch.tensor([[49406, 320, 49407, ...Array(74).fill(49407)]], { dtype: 'int64' }) });
    assert.equal(r.latents.dtype, 'bfloat16', 'the VAE ran in its weight dtype');
    assert.equal(r.encoderHiddenStates.dtype, 'bfloat16');
    assert.equal(r.modelPred.dtype, 'float32', 'the trained UNet\'s output is cast to float32');
    assert.equal(r.refPred!.dtype, 'bfloat16');
    assert.equal(r.loss.dtype, 'float32', 'the loss is computed in float32');
    const again = (run: () => torch.Tensor) => run().toArray();
    const args = [r.noisyLatents, r.timesteps, r.encoderHiddenStates] as const;
    assert.deepEqual(r.modelPred.toArray(), again(() => torch.autocast(autocast, () => p.unet.forward(...args).sample).float()));
    assert.deepEqual(r.refPred!.toArray(), again(() => torch.noGrad(() => ref.forward(...args).sample)), 'the reference ran without autocast');
    noise.dispose();
    ref.dispose();
    disposePipeline(p);
  }));
});
