// Training checkpoints: output_dir/checkpoint-<step>/ with the UNet in diffusers layout
// (unet/config.json + safetensors, loadable as is), the optimizer state (optimizer.safetensors +
// optimizer.json), and trainer_state.json (step, LR schedule, grad scaler, data-loader position,
// every random generator's state). The folder is written under a temporary name and renamed when
// complete, so a crash mid-save never leaves a checkpoint that looks finished.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../torch/index.js';
import type { UNet2DConditionModel } from '../models/index.js';
import { saveComponent, writeFileAtomic } from '../models/index.js';
import type { LoaderState } from '../data/loader.js';

export interface TrainerState {
  globalStep: number;
  /** micro-steps done within the current update (0 at a checkpoint) */
  loader: LoaderState;
  scheduler: { name: string; lastEpoch: number };
  scaler: torch.GradScalerState | null;
  /** base64 of the default CPU generator's state (torch.get_rng_state()) */
  cpuRng: string;
  /** JSON-able running metrics (the report's history) */
  history: Record<string, number>[];
  version: 1;
}

export function checkpointDirs(outputDir: string): { step: number; path: string }[] {
  if (!existsSync(outputDir)) return [];
  return readdirSync(outputDir)
    .map((d) => ({ d, m: d.match(/^checkpoint-(\d+)$/) }))
    .filter((x) => x.m && existsSync(join(outputDir, x.d, 'trainer_state.json')))
    .map((x) => ({ step: Number(x.m![1]), path: join(outputDir, x.d) }))
    .sort((a, b) => a.step - b.step);
}

export function saveCheckpoint(outputDir: string, step: number, unet: UNet2DConditionModel, optimizer: torch.optim.Optimizer<{ lr: number }>, state: TrainerState, keepLast: number | null): string {
  const final = join(outputDir, `checkpoint-${step}`);
  const tmp = join(outputDir, `.checkpoint-${step}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  try {
    mkdirSync(tmp, { recursive: true });
    saveComponent(join(tmp, 'unet'), unet, 'UNet2DConditionModel');
    const opt = optimizer.stateDict();
    torch.saveSafetensors(join(tmp, 'optimizer.safetensors'), opt.tensors);
    writeFileAtomic(join(tmp, 'optimizer.json'), JSON.stringify(opt.meta));
    writeFileAtomic(join(tmp, 'trainer_state.json'), JSON.stringify(state));
    rmSync(final, { recursive: true, force: true });
    renameSync(tmp, final);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(`cannot save checkpoint ${final}: ${(e as Error).message} (earlier checkpoints are untouched)`);
  }
  if (keepLast !== null) {
    const all = checkpointDirs(outputDir);
    for (const old of all.slice(0, Math.max(0, all.length - keepLast))) rmSync(old.path, { recursive: true, force: true });
  }
  return final;
}

export function loadCheckpoint(path: string, unet: UNet2DConditionModel, optimizer: torch.optim.Optimizer<{ lr: number }>): TrainerState {
  const state = JSON.parse(readFileSync(join(path, 'trainer_state.json'), 'utf8')) as TrainerState;
  torch.tidy(() => {
    const weights = torch.loadSafetensors(join(path, 'unet', 'diffusion_pytorch_model.safetensors'));
    unet.loadStateDict(weights, { what: `${path}/unet` });
    const tensors = torch.loadSafetensors(join(path, 'optimizer.safetensors'));
    optimizer.loadStateDict({ tensors, meta: JSON.parse(readFileSync(join(path, 'optimizer.json'), 'utf8')) });
  });
  return state;
}

export function rngState(): string {
  return torch.tidy(() => Buffer.from(torch.defaultGenerator('cpu').getState().toTypedArray() as Uint8Array).toString('base64'));
}

export function setRngState(b64: string): void {
  torch.tidy(() => {
    torch.defaultGenerator('cpu').setState(torch.fromBytes(Buffer.from(b64, 'base64'), 'uint8', [Buffer.from(b64, 'base64').length]));
  });
}
