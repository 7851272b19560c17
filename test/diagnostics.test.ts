// Training diagnostics: the loss-spike detector, the β / learning-rate collapse warning, and the
// per-update values a run logs (gradient norm before clipping, implicit accuracy by timestep
// quarter) end to end on the tiny pipeline.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { describeSpike, LossSpikeDetector } from '../src/train/loss_spikes.js';
import { parseTrainArgs } from '../src/train/args.js';
import { resolveTrainConfig } from '../src/train/config.js';
import { metricsRows, runTrain, tinyTrainingSetup } from './helpers/train_cli.js';

describe('loss spikes', () => {
  test('a loss many σ above the trailing window is reported with its step and rows; nothing before the warm-up; NaN is not judged', () => {
    const d = new LossSpikeDetector({ window: 10, warmup: 5, sigmas: 6 });
    const noisy = (i: number) => 0.69 + 0.001 * Math.sin(i);
    assert.equal(d.observe(1, 50, [1]), null, 'no judgement before the warm-up');
    for (let i = 2; i <= 12; i++) assert.equal(d.observe(i, noisy(i), [i]), null);
    assert.equal(d.observe(13, Number.NaN, [13]), null);
    const spike = d.observe(14, 0.9, [7, 42]);
    assert.ok(spike);
    assert.deepEqual([spike.step, spike.rows], [14, [7, 42]]);
    assert.ok(Math.abs(spike.mean - 0.69) < 0.002);
    assert.match(describeSpike(spike), /loss spike at step 14: 0\.9000, [\d.]+ σ above .* dataset rows: 7, 42/);
    assert.match(describeSpike(spike, 2), /dataset rows on rank 0 \(of 2 processes\): 7, 42/);
    // the window (10 updates) holds the spike: a loss as high again soon after is within 6 σ of it
    assert.equal(d.observe(15, 0.9, [1]), null);
  });
});

describe('the β / learning-rate collapse warning', () => {
  const base = ['--pretrained_model_name_or_path', 'm', '--dataset_name', 'd', '--train_batch_size', '4', '--gradient_accumulation_steps', '8'];
  const notes = (args: string[]) => resolveTrainConfig(parseTrainArgs([...base, ...args]), { env: {}, cudaDevices: 0 }).notes.join('\n');
  test('the paper\'s setting (1e-8 per pair) is quiet; 1e-7 per pair at β 5000 warns, naming its source; LoRA, other objectives and small β do not', () => {
    assert.doesNotMatch(notes(['--learning_rate', '1e-8', '--scale_lr']), /collapse/);
    assert.match(notes(['--learning_rate', '3.2e-6']), /WARNING: β 5000 with a learning rate of 1\.0e-7 per pair .* reported to collapse .*Rethinking DPO/);
    assert.doesNotMatch(notes(['--learning_rate', '3.2e-6', '--lora_rank', '8']), /collapse/);
    assert.doesNotMatch(notes(['--learning_rate', '3.2e-6', '--loss_type', 'ipo']), /collapse/);
    assert.doesNotMatch(notes(['--learning_rate', '3.2e-6', '--beta_dpo', '100']), /collapse/);
  });
});

describe('per-update diagnostics in a run', () => {
  const { dir, flags } = tinyTrainingSetup('dpo-diagnostics-', ['--train_batch_size', '4', '--gradient_accumulation_steps', '2', '--max_train_steps', '2', '--learning_rate', '1e-4']);

  test('the gradient norm before clipping, implicit accuracy by timestep quarter, and the report\'s tables', async () => {
    const out = join(dir, 'dpo');
    const r = await runTrain(flags(out, ['--max_grad_norm', '1e-3']));
    assert.equal(r.code, 0, r.err);
    const rows = metricsRows(out);
    for (const row of rows) {
      // clipped to 1e-3, the logged norm is the one before clipping
      assert.ok(row.grad_norm! > 1e-3 && Number.isFinite(row.grad_norm), `${row.grad_norm}`);
      const quarters = Object.keys(row).filter((k) => k.startsWith('implicit_acc_t'));
      assert.ok(quarters.length >= 1 && quarters.every((k) => /^implicit_acc_t(0_249|250_499|500_749|750_999)$/.test(k) && row[k]! >= 0 && row[k]! <= 1), quarters.join());
    }
    const report = readFileSync(join(out, 'report.html'), 'utf8');
    assert.match(report, /Implicit accuracy by timestep/);
    assert.match(report, /<h2>Loss spikes<\/h2><p>none<\/p>/);
    assert.match(report, /grad_norm/);
  });

  test('SFT and Adafactor runs log the gradient norm too (Adafactor: unclipped)', async () => {
    const out = join(dir, 'sft');
    const r = await runTrain(flags(out, ['--sft', '--use_adafactor']));
    assert.equal(r.code, 0, r.err);
    const rows = metricsRows(out);
    assert.ok(rows.every((x) => x.grad_norm! > 0 && !Object.keys(x).some((k) => k.startsWith('implicit_acc_t'))));
  });
});
