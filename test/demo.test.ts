// The newcomer's demo end to end (about 3 CPU minutes, so opt-in: DPO_HEAVY=1 npm test):
// implicit accuracy must rise well above chance on the generated warm-vs-cool preferences.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { projectRoot } from './helpers/fixtures.js';

test('diffusion-dpo demo: accuracy rises, outputs are written', { skip: process.env.DPO_HEAVY !== '1' && 'set DPO_HEAVY=1 to run (about 3 minutes)' }, () => {
  const out = mkdtempSync(join(tmpdir(), 'dpo-demo-'));
  try {
    const r = spawnSync(process.execPath, [join(projectRoot, 'bin', 'diffusion-dpo.js'), 'demo', '--output_dir', out], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const rows = readFileSync(join(out, 'logs', 'tuning', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { implicit_acc_accumulated: number });
    const mean = (xs: typeof rows) => xs.reduce((s, x) => s + x.implicit_acc_accumulated, 0) / xs.length;
    assert.ok(mean(rows.slice(-30)) > 0.62, `last 30 updates: mean implicit accuracy ${mean(rows.slice(-30))}`);
    for (const f of ['checkpoint-240', 'report.html', 'model_index.json']) assert.ok(existsSync(join(out, f)), f);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('demo flags pass through with or without --output_dir, and in the --flag=value form', async () => {
  const { runDemo } = await import('./helpers/train_cli.js');
  const cwd = mkdtempSync(join(tmpdir(), 'dpo-demo-flags-'));
  try {
    // without --output_dir the first flag used to be dropped ("unexpected argument '2'")
    const a = await runDemo(['--max_train_steps', '1', '--checkpointing_steps', '1'], cwd);
    assert.equal(a.code, 0, a.err);
    assert.equal((JSON.parse(a.out) as { steps: number }).steps, 1);
    assert.ok(existsSync(join(cwd, 'demo-run', 'checkpoint-1')));
    const b = await runDemo(['--output_dir=elsewhere', '--max_train_steps=1', '--checkpointing_steps=1'], cwd);
    assert.equal(b.code, 0, b.err);
    assert.ok(existsSync(join(cwd, 'elsewhere', 'checkpoint-1')));
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
});
