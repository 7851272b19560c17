// Running `diffusion-dpo train` in a child process, as a user would, and reading what it wrote.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../../src/torch/index.js';
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
