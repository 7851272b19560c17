// Training checkpoints: output_dir/checkpoint-<step>/ with the trained weights (a whole UNet in
// diffusers layout, unet/config.json + safetensors, loadable as is; or the LoRA adapters alone,
// lora_adapters.safetensors + .json), the optimizer state (optimizer.safetensors +
// optimizer.json), and trainer_state.json (step, LR schedule, grad scaler, data-loader position,
// every random generator's state, and the settings a resume must not change). The folder is
// written under a temporary name and renamed when complete, so a crash mid-save never leaves a
// checkpoint that looks finished. A training run snapshots the state to host memory and writes it
// in the background (snapshotCheckpoint + writeCheckpoint), so the next updates do not wait for the disk.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as torch from '../torch/index.js';
import { writeFileAtomic } from '../models/index.js';
import type { LoaderState } from '../data/loader.js';
import { UserError } from '../util/errors.js';

/**
 * What fixes the sequence of batches and updates: resuming with any of it changed would not
 * continue the same run (a different batch size changes what the loader's position means; a
 * different dataset or seed, which rows come next), so it is refused.
 */
export interface RunSignature {
  train_batch_size: number;
  gradient_accumulation_steps: number;
  world_size: number;
  method: 'dpo' | 'sft';
  /** The pairwise objective; absent in checkpoints written before it existed (then sigmoid). */
  loss_type?: string;
  /** How x_t is reached; absent in checkpoints written before --noising existed (then forward). */
  noising?: { kind: string; steps?: number; eta?: number; model?: string };
  /** LoRA training's settings; absent in checkpoints written before LoRA existed (then null: the whole UNet). */
  lora?: { rank: number | null; alpha: number | null; targets: string[]; init: string | null } | null;
  resolution: number;
  seed: number;
  learning_rate: number;
  lr_scheduler: string;
  lr_warmup_steps: number;
  optimizer: string;
  dataset: {
    source: string; split: string; rows_read: number; kept: number; max_train_samples: number | null; dreamlike_pairs_only: boolean;
    /** AI-feedback labels file (absent in checkpoints written before: the human labels). */
    choice_labels?: string | null;
  };
}

/** A generator's state: the default generator of `device`, base64 of get_state(). */
export interface GeneratorState {
  device: string;
  state: string;
}

export interface TrainerState {
  version: 2;
  globalStep: number;
  loader: LoaderState;
  scheduler: { name: string; lastEpoch: number };
  scaler: torch.GradScalerState | null;
  /** Every generator the run draws from: the CPU's and each CUDA device's. */
  generators: GeneratorState[];
  run: RunSignature;
  /** JSON-able running metrics (the report's history) */
  history: Record<string, number>[];
  /** Multi-process runs: each rank's data position and generators, by rank (loader and generators above are rank 0's). */
  ranks?: RankState[];
}

/** What differs between the processes of a multi-process run. */
export interface RankState {
  loader: LoaderState;
  generators: GeneratorState[];
}

/** Version 1 (before the run signature and CUDA generators). */
interface TrainerStateV1 extends Omit<TrainerState, 'version' | 'generators' | 'run'> {
  version: 1;
  cpuRng: string;
}

/**
 * What a checkpoint holds of the trained model (trained_weights.ts): tensor files and text files by
 * path in the checkpoint folder, and how the tensor file loads back.
 */
export interface TrainedWeights {
  readonly kind: 'unet' | 'lora';
  /** The trained parameters (what the optimizer updates). */
  readonly params: torch.Tensor[];
  namedTensors(): [string, torch.Tensor][];
  /** The checkpoint's tensor file, relative to the checkpoint folder. */
  readonly weightsFile: string;
  /** Text files written beside it (configs), by relative path. */
  texts(): [string, string][];
  /** Loads the tensors of weightsFile back (every key and shape checked). */
  load(tensors: Map<string, torch.Tensor>, what: string): void;
}

export class CheckpointError extends UserError {
  constructor(readonly path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = 'CheckpointError';
  }
}

export function checkpointDirs(outputDir: string): { step: number; path: string }[] {
  if (!existsSync(outputDir)) return [];
  return readdirSync(outputDir)
    .map((d) => ({ d, m: d.match(/^checkpoint-(\d+)$/) }))
    .filter((x) => x.m && existsSync(join(outputDir, x.d, 'trainer_state.json')))
    .map((x) => ({ step: Number(x.m![1]), path: join(outputDir, x.d) }))
    .sort((a, b) => a.step - b.step);
}

/** The temporary folder a checkpoint is written in, and the name it gets when complete. */
function checkpointPaths(outputDir: string, step: number): { final: string; tmp: string } {
  return { final: join(outputDir, `checkpoint-${step}`), tmp: join(outputDir, `.checkpoint-${step}.tmp-${process.pid}`) };
}

/** Renames the complete folder into place, then drops the oldest checkpoints beyond `keepLast`. */
function publishCheckpoint(outputDir: string, tmp: string, final: string, keepLast: number | null): void {
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  if (keepLast !== null) {
    const all = checkpointDirs(outputDir);
    for (const old of all.slice(0, Math.max(0, all.length - keepLast))) rmSync(old.path, { recursive: true, force: true });
  }
}

function saveError(final: string, e: unknown): UserError {
  return new UserError(`cannot save checkpoint ${final}: ${(e as Error).message} (earlier checkpoints are untouched)`, { cause: e });
}

/** Saves a checkpoint on the calling thread (no host copy of the state is kept: the least memory, but training waits). */
export function saveCheckpoint(outputDir: string, step: number, trained: TrainedWeights, optimizer: torch.optim.Optimizer<{ lr: number }>, state: TrainerState, keepLast: number | null): string {
  const { final, tmp } = checkpointPaths(outputDir, step);
  rmSync(tmp, { recursive: true, force: true });
  try {
    mkdirSync(tmp, { recursive: true });
    for (const [rel, text] of trained.texts()) {
      mkdirSync(dirname(join(tmp, rel)), { recursive: true });
      writeFileAtomic(join(tmp, rel), text);
    }
    mkdirSync(dirname(join(tmp, trained.weightsFile)), { recursive: true });
    torch.saveSafetensors(join(tmp, trained.weightsFile), new Map(trained.namedTensors()), { format: 'pt' });
    const opt = optimizer.stateDict();
    torch.saveSafetensors(join(tmp, 'optimizer.safetensors'), opt.tensors);
    writeFileAtomic(join(tmp, 'optimizer.json'), JSON.stringify(opt.meta));
    writeFileAtomic(join(tmp, 'trainer_state.json'), JSON.stringify(state));
    publishCheckpoint(outputDir, tmp, final, keepLast);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw saveError(final, e);
  }
  return final;
}

/** A checkpoint's content copied to host memory: training may change the live tensors while it is written. */
export interface CheckpointSnapshot {
  step: number;
  weightsFile: string;
  texts: [string, string][];
  weights: Map<string, torch.HostTensor>;
  optimizer: Map<string, torch.HostTensor>;
  optimizerMeta: string;
  trainerState: string;
}

/** Copies what a checkpoint holds to host memory (device tensors through pinned buffers, one synchronisation). */
export function snapshotCheckpoint(step: number, trained: TrainedWeights, optimizer: torch.optim.Optimizer<{ lr: number }>, state: TrainerState): CheckpointSnapshot {
  const opt = optimizer.stateDict();
  return {
    step, weightsFile: trained.weightsFile, texts: trained.texts(),
    weights: torch.snapshotTensors(new Map(trained.namedTensors())), optimizer: torch.snapshotTensors(opt.tensors),
    optimizerMeta: JSON.stringify(opt.meta), trainerState: JSON.stringify(state),
  };
}

/**
 * Writes a snapshot as checkpoint-<step> off the JS thread (libuv's file threads), with the same
 * atomicity as saveCheckpoint: a temporary folder renamed when every file is written and synced.
 */
export async function writeCheckpoint(outputDir: string, snap: CheckpointSnapshot, keepLast: number | null): Promise<string> {
  const { final, tmp } = checkpointPaths(outputDir, snap.step);
  await rm(tmp, { recursive: true, force: true });
  try {
    for (const [rel, text] of snap.texts) {
      await mkdir(dirname(join(tmp, rel)), { recursive: true });
      await writeFile(join(tmp, rel), text);
    }
    await mkdir(dirname(join(tmp, snap.weightsFile)), { recursive: true });
    await torch.writeSafetensorsAsync(join(tmp, snap.weightsFile), snap.weights, { format: 'pt' });
    await torch.writeSafetensorsAsync(join(tmp, 'optimizer.safetensors'), snap.optimizer);
    await writeFile(join(tmp, 'optimizer.json'), snap.optimizerMeta);
    await writeFile(join(tmp, 'trainer_state.json'), snap.trainerState);
    publishCheckpoint(outputDir, tmp, final, keepLast);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw saveError(final, e);
  }
  return final;
}

/** trainer_state.json of a checkpoint, upgraded to the current version (v1 has no signature: null). */
export function readTrainerState(path: string): { state: TrainerState; signature: RunSignature | null } {
  const file = join(path, 'trainer_state.json');
  let raw: TrainerState | TrainerStateV1;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8')) as TrainerState | TrainerStateV1;
  } catch (e) {
    throw new CheckpointError(file, `cannot read the trainer state (${(e as Error).message})`);
  }
  if (raw.version === 1) {
    const { cpuRng, ...rest } = raw;
    return { state: { ...rest, version: 2, generators: [{ device: 'cpu', state: cpuRng }], run: null as unknown as RunSignature }, signature: null };
  }
  if (raw.version !== 2) throw new CheckpointError(file, `unknown trainer state version ${String((raw as { version: unknown }).version)}`);
  return { state: raw, signature: raw.run };
}

/** Names of the floating-point tensors holding NaN or infinity. */
export function nonFiniteTensors(tensors: Iterable<[string, torch.Tensor]>): string[] {
  const bad: string[] = [];
  torch.tidy(() => {
    for (const [name, t] of tensors) if (t.isFloatingPoint() && !t.isfinite().all().item()) bad.push(name);
  });
  return bad;
}

function listNames(names: string[]): string {
  return names.slice(0, 5).join(', ') + (names.length > 5 ? `, ... (${names.length} in all)` : '');
}

/** Loads the trained weights and the optimizer state of a checkpoint; non-finite values are refused, naming the file. */
export function loadCheckpointWeights(path: string, trained: TrainedWeights, optimizer: torch.optim.Optimizer<{ lr: number }>): void {
  torch.tidy(() => {
    const weightsFile = join(path, trained.weightsFile);
    if (!existsSync(weightsFile)) {
      const other = trained.kind === 'lora' ? 'a whole UNet' : 'LoRA adapters';
      throw new CheckpointError(path, `holds no ${trained.weightsFile}: it was written by a run that trained ${other} (resume with the same kind of training, or start a new --output_dir)`);
    }
    const weights = torch.loadSafetensors(weightsFile);
    const badWeights = nonFiniteTensors(weights);
    if (badWeights.length) throw new CheckpointError(weightsFile, `NaN or infinite values in ${listNames(badWeights)}: this checkpoint cannot be resumed (resume from an earlier one)`);
    const optimizerFile = join(path, 'optimizer.safetensors');
    const tensors = torch.loadSafetensors(optimizerFile);
    const badState = nonFiniteTensors(tensors);
    if (badState.length) throw new CheckpointError(optimizerFile, `NaN or infinite values in the optimizer state (${listNames(badState)}): this checkpoint cannot be resumed (resume from an earlier one)`);
    trained.load(weights, weightsFile);
    optimizer.loadStateDict({ tensors, meta: JSON.parse(readFileSync(join(path, 'optimizer.json'), 'utf8')) });
  });
}

/** The settings of a resumed run that differ from the checkpoint's, as "name: before -> now". */
export function signatureChanges(saved: RunSignature, now: RunSignature): string[] {
  const out: string[] = [];
  const flat = (s: RunSignature): Record<string, unknown> => {
    const { dataset, ...rest } = s;
    return { ...rest, ...Object.fromEntries(Object.entries(dataset).map(([k, v]) => [`dataset ${k}`, v])) };
  };
  // checkpoints written before --loss_type trained Diffusion-DPO's sigmoid objective
  const a = flat({
    ...saved, loss_type: saved.loss_type ?? 'sigmoid', lora: saved.lora ?? null, noising: saved.noising ?? { kind: 'forward' },
    dataset: { ...saved.dataset, choice_labels: saved.dataset.choice_labels ?? null },
  });
  const b = flat(now);
  for (const k of Object.keys(b)) if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) out.push(`${k}: ${JSON.stringify(a[k])} -> ${JSON.stringify(b[k])}`);
  return out;
}

/** The devices whose default generators a run can draw from: the CPU and every CUDA device. */
export function generatorDevices(): torch.Device[] {
  const n = torch.cuda.isAvailable() ? torch.cuda.deviceCount() : 0;
  return ['cpu', ...Array.from({ length: n }, (_, i) => `cuda:${i}` as torch.Device)];
}

export function generatorStates(devices: torch.Device[] = generatorDevices()): GeneratorState[] {
  return devices.map((device) => ({
    device,
    state: torch.tidy(() => Buffer.from(torch.defaultGenerator(device).getState().toTypedArray() as Uint8Array).toString('base64')),
  }));
}

/** Restores saved generator states; returns the saved devices this process does not have (not restored). */
export function setGeneratorStates(states: GeneratorState[], available: torch.Device[] = generatorDevices()): string[] {
  const missing: string[] = [];
  for (const { device, state } of states) {
    if (!available.includes(device)) {
      missing.push(device);
      continue;
    }
    torch.tidy(() => {
      const bytes = Buffer.from(state, 'base64');
      torch.defaultGenerator(device).setState(torch.fromBytes(bytes, 'uint8', [bytes.length]));
    });
  }
  return missing;
}
