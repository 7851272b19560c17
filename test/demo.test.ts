// The newcomer's demo end to end, as `npm start` runs it (about 2.5 CPU minutes on the 2-core
// machine, so it runs by default): DPO from the bundled base moves what the model draws towards the
// preference. On prompts held out of the preference data, the DPO model's drawing is warmer than
// the base's for the same prompt and seed in at least 90% of pairs, with the lower end of the 95%
// interval above 75%, and the pixel classifier still recognises what the DPO model draws within
// 10 points of the base.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { projectRoot } from './helpers/fixtures.js';
import { runDemo } from './helpers/train_cli.js';
import { DEMO_TRAIN_DEFAULTS } from '../src/cli/demo.js';

const demoSteps = DEMO_TRAIN_DEFAULTS[DEMO_TRAIN_DEFAULTS.indexOf('--max_train_steps') + 1];

interface Summary {
  win_rate: Record<'demo_oracle' | 'clip', { win_rate: number; ci_low: number; ci_high: number }>;
  target: { met: boolean };
  fidelity: { base: { both: number; colour: number; shape: number }; dpo: { both: number; colour: number; shape: number }; ok: boolean; allowed_drop: number };
  pairs: { wins: number; losses: number; ci_low: number; ci_high: number };
}

test('diffusion-dpo demo: the DPO model beats the base under the preference on held-out prompts, and still draws what it is asked', () => {
  const out = mkdtempSync(join(tmpdir(), 'dpo-demo-'));
  try {
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [join(projectRoot, 'bin', 'diffusion-dpo.js'), 'demo', '--output_dir', out], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const minutes = (Date.now() - t0) / 60_000;
    // the data really is Pick-a-Pic parquet shards
    assert.deepEqual(readdirSync(join(out, 'demo-inputs', 'pickapic', 'data')).sort(), ['train-00000-of-00002.parquet', 'train-00001-of-00002.parquet']);
    const evalJson = JSON.parse(readFileSync(join(out, 'eval', 'eval.json'), 'utf8')) as { win_rates: Record<string, Record<string, { win_rate: number; ci_low: number; ci_high: number }>> };
    const oracle = evalJson.win_rates.demo_oracle!.dpo!;
    assert.ok(oracle.win_rate >= 0.9, `demo_oracle win rate ${oracle.win_rate}`);
    assert.ok(oracle.ci_low > 0.75, `demo_oracle interval ${oracle.ci_low}-${oracle.ci_high}`);
    // the generic scorer: prompt match is not significantly worse (its interval reaches 50%)
    assert.ok(evalJson.win_rates.clip!.dpo!.ci_high >= 0.5, `clip: ${JSON.stringify(evalJson.win_rates.clip)}`);
    const summary = JSON.parse(readFileSync(join(out, 'eval', 'demo_summary.json'), 'utf8')) as Summary;
    assert.equal(summary.target.met, true);
    assert.equal(summary.win_rate.demo_oracle.win_rate, oracle.win_rate);
    // over the pairs as independent trials too (Clopper-Pearson)
    assert.ok(summary.pairs.ci_low > 0.75, `pairs: ${JSON.stringify(summary.pairs)}`);
    const { base, dpo } = summary.fidelity;
    assert.ok(base.both - dpo.both <= summary.fidelity.allowed_drop, `fidelity: base ${JSON.stringify(base)}, dpo ${JSON.stringify(dpo)}`);
    assert.ok(dpo.colour >= 0.8 && dpo.shape >= 0.6, `the DPO model still draws the prompted colour and shape: ${JSON.stringify(dpo)}`);
    // the console ends with the numbers and the report's path
    const tail = r.stdout.trim().split('\n').slice(-6).join('\n');
    assert.match(tail, /demo_oracle \(warmer wins\): win rate \d+\.\d% \(95% CI \d+\.\d% - \d+\.\d%, bootstrap over the 6 prompts\)/);
    assert.match(tail, /\d+ wins, \d+ losses over the pairs; as independent pairs, 95% Clopper-Pearson/);
    assert.match(tail, new RegExp(`report: ${join(out, 'report.html').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    const report = readFileSync(join(out, 'report.html'), 'utf8');
    assert.match(report, /<section id="evaluation">/);
    assert.match(report, /Fidelity: does each model still draw what it is asked for\?/);
    for (const f of [`checkpoint-${demoSteps}`, 'model_index.json', join('eval', 'eval.html')]) assert.ok(existsSync(join(out, f)), f);
    console.error(`demo: ${minutes.toFixed(1)} min; demo_oracle ${JSON.stringify(oracle)}; fidelity base ${base.both}, dpo ${dpo.both}`);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('demo flags: --output_dir and --eval_seeds are the demo\'s, with or without =; the rest pass through to train', async () => {
  const cwd = mkdtempSync(join(tmpdir(), 'dpo-demo-flags-'));
  try {
    // without --output_dir the first flag used to be dropped ("unexpected argument '2'")
    const a = await runDemo(['--max_train_steps', '1', '--checkpointing_steps', '1', '--eval_seeds', '1'], cwd);
    assert.equal(a.code, 0, a.err);
    assert.match(a.out, /"steps": 1,/);
    assert.match(a.out, /DPO vs base on 6 held-out prompts x 1 seeds:/);
    assert.ok(existsSync(join(cwd, 'demo-run', 'checkpoint-1')));
    const b = await runDemo(['--output_dir=elsewhere', '--max_train_steps=1', '--checkpointing_steps=1', '--eval_seeds=1'], cwd);
    assert.equal(b.code, 0, b.err);
    assert.ok(existsSync(join(cwd, 'elsewhere', 'checkpoint-1')));
    assert.ok(existsSync(join(cwd, 'elsewhere', 'eval', 'eval.json')));
    // a LoRA run is evaluated as a LoRA, even over an earlier full run's unet/ in the same folder
    const c = await runDemo(['--output_dir=elsewhere', '--max_train_steps=1', '--checkpointing_steps=1', '--eval_seeds=1', '--lora_rank', '2', '--resume_from_checkpoint', 'none'], cwd);
    assert.equal(c.code, 0, c.err);
    const lora = JSON.parse(readFileSync(join(cwd, 'elsewhere', 'eval', 'eval.json'), 'utf8')) as { models: { label: string; kind: string }[] };
    assert.deepEqual(lora.models.map((m) => [m.label, m.kind]), [['base', 'base'], ['dpo', 'lora']]);
    // refused before any work, each by name
    for (const [args, message] of [
      [['--eval_seeds', '0'], /--eval_seeds '0': expected a positive integer/],
      [['--output_dir', '--max_train_steps', '1'], /--output_dir needs a value/],
      [['--output_dir', 'a', '--output_dir=b'], /--output_dir is given twice/],
      [['--resolution', '64'], /--resolution: the demo trains its bundled base on its own data at 32 px/],
      [['--dataset_name=x'], /--dataset_name: the demo trains its bundled base/],
    ] as const) {
      const bad = await runDemo([...args], cwd);
      assert.equal(bad.code, 2, `${args.join(' ')}: ${bad.err}`);
      assert.match(bad.err, message);
    }
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
});
