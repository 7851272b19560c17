// Loading and saving diffusers/transformers component folders (config.json + weights) and
// pipeline folders (model_index.json + one subfolder per component). Models are built on the
// 'meta' device (no memory, no random init) and take over the checkpoint's tensors, converted to
// the requested dtype and device. Weight files: safetensors, `.bin` through the restricted
// unpickler, `.fp16`-style variants and sharded `*.index.json` sets.
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import * as torch from '../torch/index.js';
import { AutoencoderKL, renameLegacyVAEKeys } from './autoencoder_kl.js';
import { CLIPTextModel, CLIPTextModelWithProjection } from './clip_text.js';
import { CLIPModel } from './clip_vision.js';
import { OpenClipModel } from './open_clip.js';
import type { RawConfig } from './config.js';
import { UNet2DConditionModel } from './unet_2d_condition.js';
import { UserError } from '../util/errors.js';

export class ModelLoadError extends UserError {
  constructor(readonly path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = 'ModelLoadError';
  }
}

export interface LoadOptions {
  dtype?: torch.DType;
  device?: torch.Device;
  /** Weight file variant, e.g. 'fp16' for diffusion_pytorch_model.fp16.safetensors. */
  variant?: string;
}

const WEIGHT_NAMES = ['diffusion_pytorch_model', 'model', 'pytorch_model'];

/** The weight files of a component folder, preferring safetensors, honouring a variant and shard indexes. */
export function findWeightFiles(folder: string, variant?: string): string[] {
  const v = variant ? `.${variant}` : '';
  for (const ext of ['safetensors', 'bin']) {
    for (const name of WEIGHT_NAMES) {
      const single = join(folder, `${name}${v}.${ext}`);
      if (existsSync(single)) return [single];
      const index = join(folder, `${name}.${ext}.index${v}.json`);
      const indexAlt = join(folder, `${name}${v}.${ext}.index.json`);
      for (const idx of [index, indexAlt]) {
        if (!existsSync(idx)) continue;
        const map = (JSON.parse(readFileSync(idx, 'utf8')) as { weight_map?: Record<string, string> }).weight_map;
        if (!map) throw new ModelLoadError(idx, 'shard index has no weight_map');
        return [...new Set(Object.values(map))].map((f) => join(folder, f));
      }
    }
  }
  const tried = WEIGHT_NAMES.map((n) => `${n}${v}.safetensors`).join(', ');
  throw new ModelLoadError(folder, `no weights found (looked for ${tried} and .bin${variant ? `; variant '${variant}'` : ''})`);
}

/**
 * Every tensor of a component's weight files, in the files' dtypes. safetensors are mapped, not
 * copied (the caller converts or copies what it keeps), so a 5 GB UNet is read once.
 */
export function readWeights(files: string[]): Map<string, torch.Tensor> {
  const out = new Map<string, torch.Tensor>();
  for (const file of files) {
    const tensors = file.endsWith('.safetensors') ? torch.loadSafetensors(file, { view: true }) : torch.loadTorchCheckpoint(file);
    for (const [k, t] of tensors) out.set(k, t);
  }
  return out;
}

export function readConfig(folder: string): RawConfig {
  const path = join(folder, 'config.json');
  if (!existsSync(path)) throw new ModelLoadError(folder, 'no config.json');
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as RawConfig;
  } catch (e) {
    throw new ModelLoadError(path, `invalid JSON (${(e as Error).message})`);
  }
}

/** Builds `make(config)` on the meta device and fills it from the folder's weights. */
function loadInto<M extends torch.nn.Module>(folder: string, make: (raw: RawConfig) => M, o: LoadOptions, fixKeys?: (sd: Map<string, torch.Tensor>, model: M) => void): M {
  const raw = readConfig(folder);
  const model = make(raw);
  torch.tidy(() => {
    const sd = readWeights(findWeightFiles(folder, o.variant));
    fixKeys?.(sd, model);
    try {
      model.loadStateDict(sd, { assign: true, dtype: o.dtype, device: o.device ?? 'cpu', what: `weights of ${folder}` });
    } catch (e) {
      throw new ModelLoadError(folder, (e as Error).message);
    }
  });
  return model;
}

export function loadUNet(folder: string, o: LoadOptions = {}): UNet2DConditionModel {
  return loadInto(folder, (raw) => new UNet2DConditionModel(raw, { device: 'meta' }), o);
}

export function loadVAE(folder: string, o: LoadOptions = {}): AutoencoderKL {
  return loadInto(folder, (raw) => new AutoencoderKL(raw, { device: 'meta' }), o, (sd) => {
    for (const [k, t] of [...sd]) {
      const renamed = renameLegacyVAEKeys(k);
      if (renamed === k) continue;
      sd.delete(k);
      // Very old checkpoints stored these projections as 1x1 convs.
      sd.set(renamed, t.ndim === 4 ? t.squeeze(-1).squeeze(-1) : t);
    }
  });
}

/** transformers >= 4.31 no longer saves position_ids; they are always arange(max_positions). */
function addPositionIds(sd: Map<string, torch.Tensor>, model: CLIPTextModel | CLIPTextModelWithProjection): void {
  const key = 'text_model.embeddings.position_ids';
  if (!sd.has(key)) sd.set(key, torch.arange(0, model.config.maxPositionEmbeddings, 1, { dtype: 'int64' }).unsqueeze(0));
}

export function loadCLIPTextModel(folder: string, o: LoadOptions = {}): CLIPTextModel {
  return loadInto(folder, (raw) => new CLIPTextModel(raw, { device: 'meta' }), o, addPositionIds);
}

export function loadCLIPTextModelWithProjection(folder: string, o: LoadOptions = {}): CLIPTextModelWithProjection {
  return loadInto(folder, (raw) => new CLIPTextModelWithProjection(raw, { device: 'meta' }), o, addPositionIds);
}

/** transformers' CLIPModel (PickScore, OpenAI CLIP) from a folder with config.json and its weights. */
export function loadCLIPModel(folder: string, o: LoadOptions = {}): CLIPModel {
  return loadInto(folder, (raw) => new CLIPModel(raw, { device: 'meta' }), o, (sd, model) => {
    // transformers >= 4.31 saves neither tower's position_ids
    const ids = (n: number) => torch.arange(0, n, 1, { dtype: 'int64' }).unsqueeze(0);
    if (!sd.has('text_model.embeddings.position_ids')) sd.set('text_model.embeddings.position_ids', ids(model.config.text.maxPositionEmbeddings));
    const v = model.config.vision;
    if (!sd.has('vision_model.embeddings.position_ids')) sd.set('vision_model.embeddings.position_ids', ids((v.imageSize / v.patchSize) ** 2 + 1));
  });
}

/**
 * open_clip's CLIP from a checkpoint file: a PyTorch checkpoint holding the state dict itself or
 * under 'state_dict' (HPSv2's files), with or without DistributedDataParallel's 'module.' prefix,
 * or a safetensors file. The architecture comes from `config` (open_clip's model config JSON).
 */
export function loadOpenClipModel(file: string, config: RawConfig, o: LoadOptions = {}): OpenClipModel {
  const model = new OpenClipModel(config, { device: 'meta' });
  torch.tidy(() => {
    const raw = file.endsWith('.safetensors') ? torch.loadSafetensors(file, { view: true }) : torch.loadTorchCheckpoint(file);
    const sd = new Map<string, torch.Tensor>();
    for (const [k, t] of raw) sd.set(k.replace(/^state_dict\./, '').replace(/^module\./, ''), t);
    try {
      model.loadStateDict(sd, { assign: true, dtype: o.dtype, device: o.device ?? 'cpu', what: `weights of ${file}` });
    } catch (e) {
      throw new ModelLoadError(file, (e as Error).message);
    }
  });
  return model;
}

/** The diffusers version written into configs we save (the reference library's). */
export const DIFFUSERS_VERSION = '0.20.0';

/**
 * Writes a component folder: config.json (the model's config with `_class_name` and
 * `_diffusers_version`) and the weights as safetensors, each atomically (temp + rename).
 */
type SavedModel = torch.nn.Module & { config: { raw: RawConfig } };
type Library = 'diffusers' | 'transformers';

/** config.json of a saved component, as its library writes it (the class name where that library looks for it). */
export function componentConfigJson(model: SavedModel, className: string, library: Library = 'diffusers'): string {
  const config: RawConfig = library === 'diffusers'
    ? { ...model.config.raw, _class_name: className, _diffusers_version: DIFFUSERS_VERSION }
    : { ...model.config.raw, architectures: [className] };
  return JSON.stringify(config, null, 2) + '\n';
}

/** The weights file name a library loads by default. */
export function componentWeightsName(library: Library = 'diffusers'): string {
  return library === 'diffusers' ? 'diffusion_pytorch_model.safetensors' : 'model.safetensors';
}

export function saveComponent(folder: string, model: SavedModel, className: string, o: { weightsName?: string; library?: Library } = {}): void {
  mkdirSync(folder, { recursive: true });
  writeFileAtomic(join(folder, 'config.json'), componentConfigJson(model, className, o.library));
  torch.saveSafetensors(join(folder, o.weightsName ?? componentWeightsName(o.library)), model.stateDict(), { format: 'pt' });
}

export function writeFileAtomic(path: string, data: string | Buffer): void {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Date.now()}`);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** The model components of a Stable Diffusion (1.x/2.x) or SDXL pipeline folder. */
export interface PipelineComponents {
  kind: 'sd' | 'sdxl';
  /** model_index.json as read. */
  index: RawConfig;
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  textEncoder: CLIPTextModel | null;
  textEncoder2: CLIPTextModelWithProjection | null;
  /** Folder the non-model components (tokenizers, scheduler) are read from. */
  folder: string;
}

const PIPELINE_CLASSES: Record<string, 'sd' | 'sdxl'> = {
  StableDiffusionPipeline: 'sd',
  StableDiffusionXLPipeline: 'sdxl',
  StableDiffusionXLImg2ImgPipeline: 'sdxl',
};

/** Reads model_index.json and loads the UNet, VAE and text encoder(s) it names. */
export function loadPipeline(folder: string, o: LoadOptions & { vaeFolder?: string; unetFolder?: string } = {}): PipelineComponents {
  const indexPath = join(folder, 'model_index.json');
  if (!existsSync(indexPath)) throw new ModelLoadError(folder, 'no model_index.json: not a diffusers pipeline folder');
  const index = JSON.parse(readFileSync(indexPath, 'utf8')) as RawConfig;
  const cls = String(index._class_name);
  const kind = PIPELINE_CLASSES[cls];
  if (!kind) throw new ModelLoadError(indexPath, `pipeline class '${cls}' is not supported (supported: ${Object.keys(PIPELINE_CLASSES).join(', ')})`);
  const has = (name: string) => Array.isArray(index[name]) && (index[name] as unknown[])[0] !== null;
  const unet = loadUNet(o.unetFolder ?? join(folder, 'unet'), o);
  const vae = loadVAE(o.vaeFolder ?? join(folder, 'vae'), o);
  const textEncoder = has('text_encoder') ? loadCLIPTextModel(join(folder, 'text_encoder'), o) : null;
  const textEncoder2 = has('text_encoder_2') ? loadCLIPTextModelWithProjection(join(folder, 'text_encoder_2'), o) : null;
  if (kind === 'sd' && !textEncoder) throw new ModelLoadError(indexPath, 'a StableDiffusionPipeline needs a text_encoder');
  if (kind === 'sdxl' && !textEncoder2) throw new ModelLoadError(indexPath, 'an SDXL pipeline needs text_encoder_2');
  return { kind, index, unet, vae, textEncoder, textEncoder2, folder };
}

/**
 * Writes a diffusers pipeline folder: model_index.json, the models as safetensors component
 * folders, and the tokenizer and scheduler folders copied from the source pipeline.
 */
export function savePipeline(out: string, p: PipelineComponents): void {
  mkdirSync(out, { recursive: true });
  saveComponent(join(out, 'unet'), p.unet, 'UNet2DConditionModel');
  saveComponent(join(out, 'vae'), p.vae, 'AutoencoderKL');
  if (p.textEncoder) saveComponent(join(out, 'text_encoder'), p.textEncoder, 'CLIPTextModel', { library: 'transformers' });
  if (p.textEncoder2) saveComponent(join(out, 'text_encoder_2'), p.textEncoder2, 'CLIPTextModelWithProjection', { library: 'transformers' });
  copyComponents(p.folder, out, ['tokenizer', 'tokenizer_2', 'scheduler', 'feature_extractor']);
  writeFileAtomic(join(out, 'model_index.json'), JSON.stringify({ ...p.index, _diffusers_version: DIFFUSERS_VERSION }, null, 2) + '\n');
}

/** Copies component folders as files (a Hub cache's snapshot holds symlinks into its blobs, which must not be copied as links). */
function copyComponents(from: string, out: string, subs: string[]): void {
  for (const sub of subs) {
    const src = join(from, sub);
    if (existsSync(src) && src !== join(out, sub)) cpSync(src, join(out, sub), { recursive: true, dereference: true });
  }
}

/**
 * A pipeline folder from `source` with `unet` in it, when the other models were never loaded
 * (training from a latent cache): their folders are copied as they are (the VAE from `vaeFolder`
 * when one replaced the pipeline's), the UNet written, model_index.json kept.
 */
export function savePipelineWithUNet(out: string, source: string, unet: UNet2DConditionModel, o: { vaeFolder?: string } = {}): void {
  const index = JSON.parse(readFileSync(join(source, 'model_index.json'), 'utf8')) as RawConfig;
  mkdirSync(out, { recursive: true });
  saveComponent(join(out, 'unet'), unet, 'UNet2DConditionModel');
  copyComponents(source, out, ['text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2', 'scheduler', 'feature_extractor', ...(o.vaeFolder ? [] : ['vae'])]);
  if (o.vaeFolder && o.vaeFolder !== join(out, 'vae')) cpSync(o.vaeFolder, join(out, 'vae'), { recursive: true, dereference: true });
  writeFileAtomic(join(out, 'model_index.json'), JSON.stringify({ ...index, _diffusers_version: DIFFUSERS_VERSION }, null, 2) + '\n');
}

export function disposePipeline(p: PipelineComponents): void {
  p.unet.dispose();
  p.vae.dispose();
  p.textEncoder?.dispose();
  p.textEncoder2?.dispose();
}
