// What a training output records of the run that made it, for the model card. A LoRA file carries
// it in its metadata (key "diffusion_dpo", written by the trainer's saveLoraWeights); a pipeline or
// UNet output has it spread over the last row of logs/*/metrics.jsonl (the step) and the latest
// checkpoint's trainer_state.json (the run signature: batch, learning rate, resolution, dataset,
// objective). What none of them records (β, and the base model of a pipeline or UNet run) stays
// null: the card says "unknown" rather than guess.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { RunSignature } from '../train/checkpoint.js';
import { UserError } from '../util/errors.js';
import type { LoraFacts, TrainingFacts } from './model_card.js';
import { readSafetensorsHeader, type UploadContents } from './upload_contents.js';

export const UNKNOWN_FACTS: TrainingFacts = {
  baseModel: null, unetInit: null, dataset: null, objective: null, betaDpo: null, steps: null, effectiveBatch: null,
  learningRate: null, resolution: null, lora: null,
};

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);

/** The facts of a LoRA file's "diffusion_dpo" metadata (absent, as in files of other tools: all unknown). */
export function loraFileFacts(file: string): TrainingFacts {
  const raw = readSafetensorsHeader(file).metadata.diffusion_dpo;
  return raw === undefined ? UNKNOWN_FACTS : runDescriptionFacts(`${file}: its metadata diffusion_dpo`, raw);
}

/** A run's description (the trainer's training_run.json, or a LoRA file's diffusion_dpo metadata) as facts. */
function runDescriptionFacts(where: string, raw: string): TrainingFacts {
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(raw) as Record<string, unknown>;
  } catch (e) {
    throw new UserError(`${where} is not valid JSON (${(e as Error).message})`);
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new UserError(`${where} is not a JSON object`);
  const l = (typeof m.lora === 'object' && m.lora !== null ? m.lora : null) as Record<string, unknown> | null;
  const lora: LoraFacts | null = l && {
    rank: num(l.rank), alpha: num(l.alpha), init: str(l.init),
    targets: Array.isArray(l.targets) ? l.targets.filter((t): t is string => typeof t === 'string') : [],
  };
  return {
    baseModel: str(m.base_model), unetInit: str(m.unet_init), dataset: str(m.dataset), objective: str(m.objective),
    betaDpo: num(m.beta_dpo), steps: num(m.steps), effectiveBatch: num(m.effective_batch), learningRate: num(m.learning_rate),
    resolution: num(m.resolution), lora,
  };
}

/** The last row of the most recently written logs/<project>/metrics.jsonl, or null. */
function lastMetricsRow(folder: string): Record<string, unknown> | null {
  const logs = join(folder, 'logs');
  if (!existsSync(logs) || !statSync(logs).isDirectory()) return null;
  const files = readdirSync(logs).map((d) => join(logs, d, 'metrics.jsonl')).filter((f) => existsSync(f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (files.length === 0) return null;
  const lines = readFileSync(files[0]!, 'utf8').split('\n').filter((l) => l.trim() !== '');
  // the last complete row (a killed run can leave a torn last line)
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      const row = JSON.parse(lines[i]!) as unknown;
      if (typeof row === 'object' && row !== null) return row as Record<string, unknown>;
    } catch {
      continue;
    }
  }
  return null;
}

interface SavedState {
  globalStep: number | null;
  run: Partial<RunSignature> | null;
}

function readState(file: string): SavedState {
  let s: Record<string, unknown>;
  try {
    s = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new UserError(`${file}: cannot read the trainer state (${(e as Error).message})`);
  }
  // version 1 states have no run signature
  const run = typeof s.run === 'object' && s.run !== null ? (s.run as Partial<RunSignature>) : null;
  return { globalStep: num(s.globalStep), run };
}

/** The trainer state of the folder itself (a checkpoint), else of its latest checkpoint-N/. */
function latestState(folder: string, isCheckpoint: boolean): SavedState | null {
  if (isCheckpoint) return readState(join(folder, 'trainer_state.json'));
  const latest = readdirSync(folder).map((d) => ({ d, m: d.match(/^checkpoint-(\d+)$/) }))
    .filter((x) => x.m && existsSync(join(folder, x.d, 'trainer_state.json')))
    .sort((a, b) => Number(b.m![1]) - Number(a.m![1]))[0];
  return latest ? readState(join(folder, latest.d, 'trainer_state.json')) : null;
}

/** A pipeline or UNet training output's facts: its training_run.json when the run wrote one, else what its logs and checkpoints record. */
export function trainingOutputFacts(folder: string, isCheckpoint: boolean): TrainingFacts {
  const described = join(folder, 'training_run.json');
  if (!isCheckpoint && existsSync(described)) return runDescriptionFacts(described, readFileSync(described, 'utf8'));
  const row = isCheckpoint ? null : lastMetricsRow(folder);
  const state = latestState(folder, isCheckpoint);
  const run = state?.run ?? null;
  const batch = run ? [run.train_batch_size, run.gradient_accumulation_steps, run.world_size].map(num) : [];
  // checkpoints written before --loss_type trained Diffusion-DPO's sigmoid objective
  const objective = run?.method === 'sft' ? 'sft' : run?.method === 'dpo' ? run.loss_type ?? 'sigmoid' : null;
  return {
    ...UNKNOWN_FACTS,
    dataset: str(run?.dataset?.source),
    objective,
    steps: num(row?.step) ?? state?.globalStep ?? null,
    effectiveBatch: batch.length === 3 && batch.every((b) => b !== null) ? (batch as number[]).reduce((a, b) => a * b, 1) : null,
    learningRate: num(run?.learning_rate),
    resolution: num(run?.resolution),
  };
}

/** The facts of what `inspectUploadFolder` found. */
export function uploadFacts(c: UploadContents): TrainingFacts {
  if (c.kind === 'lora') return loraFileFacts(c.singleFile ? c.files[0]!.local : join(c.folder, c.loraWeightName));
  return trainingOutputFacts(c.folder, c.isCheckpoint);
}
