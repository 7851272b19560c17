// Running `diffusion-dpo train` in a child process, as a user would, and reading what it wrote.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import * as torch from '../../src/torch/index.js';
import { writeTinyPipeline, writeWarmPreferenceSet } from './tiny_pipeline.js';
import { projectRoot } from './fixtures.js';

export const bin = join(projectRoot, 'bin', 'diffusion-dpo.js');

export interface CliRun {
  code: number | null;
  err: string;
  out: string;
}

export function runCli(argv: string[], o: { cwd?: string; env?: Record<string, string> } = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [bin, ...argv], { cwd: o.cwd, env: { ...process.env, DPO_NUM_THREADS: '1', ...o.env } });
    let err = '';
    let out = '';
    p.stderr.on('data', (d) => (err += d));
    p.stdout.on('data', (d) => (out += d));
    p.on('close', (code) => resolve({ code, err, out }));
  });
}

export function runTrain(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return runCli(['train', ...args], { env });
}

/** The rows of a run's metrics.jsonl (logs/<tracker_project_name>/). */
export function metricsRows(out: string, project = 'tuning'): Record<string, number>[] {
  return readFileSync(join(out, 'logs', project, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
}

/** Asserts two UNet safetensors files hold bit-identical tensors. */
export function assertSameUNet(a: string, b: string, what: string): void {
  torch.tidy(() => {
    const x = torch.loadSafetensors(join(a, 'unet', 'diffusion_pytorch_model.safetensors'));
    const y = torch.loadSafetensors(join(b, 'unet', 'diffusion_pytorch_model.safetensors'));
    assert.deepEqual([...y.keys()], [...x.keys()]);
    const differing = [...x].filter(([k, t]) => !Buffer.from(t.toTypedArray().buffer).equals(Buffer.from(y.get(k)!.toTypedArray().buffer))).map(([k]) => k);
    assert.deepEqual(differing, [], `${what}: UNet tensors that differ`);
  });
}

export function runDemo(args: string[], cwd: string): Promise<CliRun> {
  return runCli(['demo', ...args], { cwd });
}

/**
 * The tiny training setup most training tests share: a tiny SD pipeline and 8 warm/cold preference
 * pairs of 16 px in a temporary folder (made before the suite's tests, removed after), and the
 * flags of a short float32 run on them; `settings` adds or overrides flags (batch, steps, lr, ...).
 */
export function tinyTrainingSetup(prefix: string, settings: string[]): { dir: string; model: string; data: () => string; flags: (out: string, extra?: string[]) => string[] } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const model = join(dir, 'model');
  let data = '';
  before(async () => {
    writeTinyPipeline(model, 2);
    data = await writeWarmPreferenceSet(join(dir, 'data'), 8, 16, 3);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  return {
    dir, model, data: () => data,
    flags: (out, extra = []) => ['--pretrained_model_name_or_path', model, '--dataset_name', data, '--output_dir', out, '--resolution', '16',
      '--lr_scheduler', 'constant', '--lr_warmup_steps', '0', '--mixed_precision', 'no', '--seed', '2', ...settings, ...extra],
  };
}
