// What `upload` sends: which kind of result a folder holds (a pipeline, a UNet or a LoRA), decided
// from its files alone, and the files that go to the Hub. Left out: training checkpoints
// (checkpoint-*/: optimizer state, many GB, useless for inference), logs/ (metrics.jsonl and
// TensorBoard events; the card and report.html summarise them), bad_rows*.jsonl (row ids of the
// training data), hidden files and folders (.git, and the .name.tmp-* files and .checkpoint-*.tmp-*
// folders of interrupted writes) and other temporary files (*.tmp, *.incomplete, *~). report.html
// and eval.json are uploaded: they are the run's curves and scores, the card links them.
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, readSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import * as torch from '../torch/index.js';
import { UserError } from '../util/errors.js';
import { DEFAULT_LORA_WEIGHT_NAME, type ModelFamily, type UploadKind } from './model_card.js';
import { isCompleteSnapshot } from './resolve.js';

export interface UploadFile {
  /** The path in the repo ('/'-separated). */
  path: string;
  /** The local file. */
  local: string;
  size: number;
}

export interface UploadContents {
  kind: UploadKind;
  /** The folder given (a LoRA file's own folder when the file was given). */
  folder: string;
  /** A LoRA file given by itself: only it is uploaded. */
  singleFile: boolean;
  files: UploadFile[];
  /** What was left out and why ("checkpoint-500/ (training checkpoint)"). */
  skipped: string[];
  /** The folder has its own README.md (uploaded as it is; no card is generated). */
  userReadme: boolean;
  family: ModelFamily | null;
  /** A UNet: its files sit under unet/. */
  unetSubfolder: boolean;
  /** A LoRA: the weights file (repo path). */
  loraWeightName: string;
  /** The folder is itself a training checkpoint (trainer_state.json): its facts come from there. */
  isCheckpoint: boolean;
}

/** Files of a checkpoint folder that only a resumed run needs. */
const RESUME_ONLY = new Set(['optimizer.safetensors', 'optimizer.json', 'trainer_state.json']);

/** Why a path (relative, '/'-separated) is not uploaded, or null when it is. */
export function skipReason(rel: string, o: { checkpointFolder?: boolean } = {}): string | null {
  const parts = rel.split('/');
  const top = parts[0]!;
  const name = parts[parts.length - 1]!;
  if (parts.some((p) => p.startsWith('.'))) return 'hidden or temporary';
  if (parts.length > 1 && /^checkpoint-/.test(top)) return 'training checkpoint';
  if (parts.length > 1 && top === 'logs') return 'training logs';
  if (parts.length === 1 && /^bad_rows.*\.jsonl$/.test(name)) return 'list of unusable training rows';
  if (/(\.tmp|\.tmp-\d+(-\d+)?|\.incomplete|~)$/.test(name)) return 'temporary file';
  if (o.checkpointFolder && parts.length === 1 && RESUME_ONLY.has(name)) return 'optimizer and trainer state (only resuming needs them)';
  return null;
}

/** One line per left-out folder, not per file in it: the path up to the component that excludes it. */
function shownSkipped(rel: string): string {
  const parts = rel.split('/');
  const hidden = parts.findIndex((p) => p.startsWith('.'));
  const end = hidden >= 0 ? hidden + 1 : /^(checkpoint-.*|logs)$/.test(parts[0]!) ? 1 : parts.length;
  return parts.slice(0, end).join('/') + (end < parts.length ? '/' : '');
}

/** Every file under `folder` (symbolic links followed), as '/'-separated relative paths, sorted. */
function walk(folder: string, rel = '', seen = new Set<string>([realpathSync(folder)])): string[] {
  const out: string[] = [];
  for (const d of readdirSync(join(folder, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${d.name}` : d.name;
    // links are followed (a Hugging Face cache snapshot is links into blobs/), a folder once: a link to a parent would loop
    const s = d.isSymbolicLink() ? statSync(join(folder, r), { throwIfNoEntry: false }) : d;
    if (!s) continue;
    if (s.isDirectory()) {
      const real = realpathSync(join(folder, r));
      if (seen.has(real)) continue;
      seen.add(real);
      out.push(...walk(folder, r, seen));
    } else if (s.isFile()) out.push(r);
  }
  return out.sort();
}

function readJson(path: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UserError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UserError(`${path}: not a JSON object`);
  return v as Record<string, unknown>;
}

/** SD 1.x, 2.x or XL from a UNet config: SDXL's UNet adds time ids to the text embedding, and each family has its own text width. */
export function familyOfUNetConfig(config: Record<string, unknown>): ModelFamily {
  const cross = config.cross_attention_dim;
  const width = Array.isArray(cross) ? cross[0] : cross;
  if (config.addition_embed_type === 'text_time' || width === 2048) return 'sdxl';
  if (width === 1024) return 'sd2';
  if (width === 768) return 'sd1';
  return 'sd';
}

/** The family from a LoRA file's tensor shapes: a cross-attention key projection's input width is the text encoder's. */
export function familyOfLoraShapes(tensors: { name: string; shape: number[] }[]): ModelFamily | null {
  const key = tensors.find((t) => /attn2/.test(t.name) && /to_k/.test(t.name) && /(down|lora_A)\.weight$/.test(t.name) && t.shape.length === 2);
  if (!key) return null;
  return ({ 2048: 'sdxl', 1024: 'sd2', 768: 'sd1' } as Record<number, ModelFamily>)[key.shape[1]!] ?? null;
}

/** A safetensors file's header (tensor names and shapes, metadata), read without loading any tensor. */
export function readSafetensorsHeader(file: string): { tensors: { name: string; shape: number[] }[]; metadata: Record<string, string> } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new UserError(`${file}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const size = fstatSync(fd).size;
    return torch.parseSafetensorsHeader(file, size, (pos, len) => {
      const b = Buffer.alloc(len);
      if (readSync(fd, b, 0, len, pos) !== len) throw new UserError(`${file}: short read`);
      return b;
    });
  } finally {
    closeSync(fd);
  }
}

const WEIGHTS = /^diffusion_pytorch_model(\.[\w]+)?(-\d{5}-of-\d{5})?\.(safetensors|bin)$/;

function hasUNetWeights(folder: string): boolean {
  return readdirSync(folder).some((n) => WEIGHTS.test(n));
}

function isUNetConfig(path: string): boolean {
  return existsSync(path) && readJson(path)._class_name === 'UNet2DConditionModel';
}

const EXPECTED = 'a pipeline (model_index.json), a UNet (config.json of a UNet2DConditionModel, or unet/config.json) ' +
  `or a LoRA (${DEFAULT_LORA_WEIGHT_NAME}, or a .safetensors LoRA file)`;

/** A LoRA file: readable, and with LoRA tensors in it (ours, diffusers', peft's and kohya's names all say lora). */
function loraFamily(file: string): ModelFamily | null {
  const { tensors } = readSafetensorsHeader(file);
  if (!tensors.some((t) => /lora/i.test(t.name))) throw new UserError(`${file}: holds no LoRA tensors (no tensor name contains 'lora'); expected ${EXPECTED}`);
  return familyOfLoraShapes(tensors);
}

function wrongKind(folder: string): UserError {
  const names = readdirSync(folder);
  let hint = '';
  if (names.includes('lora_adapters.safetensors')) {
    hint = ' (lora_adapters.safetensors is a LoRA training checkpoint, which diffusers cannot load: upload the run\'s output folder once training has finished)';
  } else if (names.some((n) => /^checkpoint-\d+$/.test(n))) {
    hint = ' (it holds training checkpoints but no final result: upload a checkpoint-N folder of a whole-UNet run, or finish the run)';
  }
  return new UserError(`${folder} is none of what upload sends: expected ${EXPECTED}${hint}`);
}

/** The kind of result at `path` and the files to upload. */
export function inspectUploadFolder(path: string): UploadContents {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) throw new UserError(`${path}: no such file or folder`);
  if (st.isFile()) {
    if (!path.endsWith('.safetensors')) throw new UserError(`${path} is a file, not a .safetensors LoRA file; expected ${EXPECTED}`);
    const name = basename(path);
    return {
      kind: 'lora', folder: dirname(path), singleFile: true, files: [{ path: name, local: path, size: st.size }], skipped: [], userReadme: false,
      family: loraFamily(path), unetSubfolder: false, loraWeightName: name, isCheckpoint: false,
    };
  }
  const has = (rel: string) => existsSync(join(path, rel));
  let kind: UploadKind;
  let family: ModelFamily | null;
  let unetSubfolder = false;
  if (has('model_index.json')) {
    if (has(DEFAULT_LORA_WEIGHT_NAME)) {
      throw new UserError(`${path} holds both a pipeline (model_index.json) and a LoRA (${DEFAULT_LORA_WEIGHT_NAME}): upload one of them (the LoRA by its file path)`);
    }
    if (!isCompleteSnapshot(path)) throw new UserError(`${path} has model_index.json but not every model component's config.json and weights: an incomplete pipeline`);
    kind = 'pipeline';
    const index = readJson(join(path, 'model_index.json'));
    const unetConfig = join(path, 'unet', 'config.json');
    family = String(index._class_name ?? '').includes('XL') ? 'sdxl' : existsSync(unetConfig) ? familyOfUNetConfig(readJson(unetConfig)) : null;
  } else if (has(DEFAULT_LORA_WEIGHT_NAME)) {
    kind = 'lora';
    family = loraFamily(join(path, DEFAULT_LORA_WEIGHT_NAME));
  } else if (isUNetConfig(join(path, 'config.json')) || has(join('unet', 'config.json'))) {
    kind = 'unet';
    unetSubfolder = !isUNetConfig(join(path, 'config.json'));
    const dir = unetSubfolder ? join(path, 'unet') : path;
    const config = readJson(join(dir, 'config.json'));
    if (config._class_name !== undefined && config._class_name !== 'UNet2DConditionModel') {
      throw new UserError(`${join(dir, 'config.json')} is the config of a ${String(config._class_name)}, not of a UNet2DConditionModel; expected ${EXPECTED}`);
    }
    if (!hasUNetWeights(dir)) throw new UserError(`${dir} has a UNet config.json but no diffusion_pytorch_model weights`);
    family = familyOfUNetConfig(config);
  } else {
    throw wrongKind(path);
  }
  const isCheckpoint = kind === 'unet' && has('trainer_state.json');
  const files: UploadFile[] = [];
  const skipped = new Map<string, string>();
  for (const rel of walk(path)) {
    const why = skipReason(rel, { checkpointFolder: isCheckpoint });
    if (why) {
      skipped.set(shownSkipped(rel), why);
      continue;
    }
    files.push({ path: rel, local: join(path, rel), size: statSync(join(path, rel)).size });
  }
  return {
    kind, folder: path, singleFile: false, files, skipped: [...skipped].map(([p, why]) => `${p} (${why})`), userReadme: has('README.md'),
    family, unetSubfolder, loraWeightName: DEFAULT_LORA_WEIGHT_NAME, isCheckpoint,
  };
}
