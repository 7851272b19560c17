// What `sample` and `compare` share: the flags named after diffusers' pipeline arguments, their
// checks, and rendering one folder of images (a PNG per prompt and seed, with its settings in text
// chunks) from a loaded pipeline.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import * as torch from '../torch/index.js';
import { checkImageSide, checkUNetFits, CompatibilityError, loadUNet, readPipelineShape, type PipelineComponents } from '../models/index.js';
import { writeFileAtomic } from '../models/loading.js';
import { generate, imagesToBytes, vaeScaleFactor } from '../pipelines/text_to_image.js';
import { addPngText } from '../pipelines/png.js';
import { PROMPT_SET_NAMES, loadPromptSet, readPromptFile } from '../pipelines/prompts.js';
import { createScheduler, schedulerFromConfig, type SchedulerName } from '../schedulers/samplers.js';
import { CLIPTokenizer } from '../tokenizers/clip.js';
import { resolveDeviceFlag } from '../util/device_flag.js';
import { flagsHelp, type FlagValues } from '../util/flags.js';
import { HELP_FLAG } from './args.js';
import { CliError } from './errors.js';

export const SAMPLING_FLAGS = {
  pretrained_model_name_or_path: { type: 'string', default: null, valueName: 'M', help: 'pipeline folder, Hub id, or a training output_dir / checkpoint' },
  revision: { type: 'string', default: null, help: 'Hub revision of the pipeline' },
  prompt: { type: 'string', default: null, multiple: true, valueName: 'P', help: 'a prompt (repeatable)' },
  prompt_file: { type: 'string', default: null, valueName: 'F', help: 'a prompt file: .txt (a line each), .jsonl/.json (records with "prompt", or a list of strings, e.g. HPSv2\'s benchmark JSONs), .tsv/.csv/.parquet (a Prompt/prompt/caption column)' },
  prompts: { type: 'string', default: null, valueName: 'SET', help: 'notebook (the reference notebook\'s 16 prompts), parti (PartiPrompts, nateraw/parti-prompts on the Hub), hpsv2 (HPSv2\'s benchmark: the 4 style files of zhwang/HPDv2 on the Hub), a file or folder of prompt files, or any Hub dataset id[:subfolder] holding them' },
  negative_prompt: { type: 'string', default: null, valueName: 'N', help: 'one negative prompt for all' },
  num_inference_steps: { type: 'int', default: 50, min: 1, valueName: 'N', help: 'denoising steps' },
  guidance_scale: { type: 'float', default: null, valueName: 'G', help: 'default 7.5 (SD) or 5.0 (SDXL), as the reference notebook' },
  guidance_rescale: { type: 'float', default: 0, min: 0, valueName: 'R', help: 'guidance rescale (Lin et al.)' },
  height: { type: 'int', default: null, min: 1, valueName: 'H', help: 'default: the UNet\'s sample_size x the VAE\'s scale factor; a multiple of what the models need (64 for SD, 32 for SDXL)' },
  width: { type: 'int', default: null, min: 1, valueName: 'W', help: 'as --height' },
  seed: { type: 'int', default: 0, min: 0, valueName: 'S', help: 'image k of a prompt uses seed + k' },
  num_images_per_prompt: { type: 'int', default: 1, min: 1, valueName: 'K', help: 'images per prompt' },
  scheduler: { type: 'string', default: null, valueName: 'NAME', help: 'ddpm, ddim, pndm, euler, euler_ancestral, dpmpp_2m, dpmpp_2m_karras (default: the pipeline\'s)' },
  output_dir: { type: 'string', default: null, valueName: 'D', help: 'where the images go' },
  device: { type: 'string', default: 'auto', valueName: 'D', help: 'auto (cuda:0 when CUDA is available, else cpu), cpu, cuda or cuda:N' },
  torch_dtype: { type: 'string', default: 'float32', choices: ['float32', 'float16', 'bfloat16'], valueName: 'T', help: 'the weights\' dtype (the VAE decodes in float32 where its config sets force_upcast)' },
  ...HELP_FLAG,
} as const;

export const SAMPLING_HELP = flagsHelp(SAMPLING_FLAGS, { width: 28 });

export interface SamplingSettings {
  prompts: string[];
  negativePrompt: string | null;
  steps: number;
  guidanceScale: number | null;
  guidanceRescale: number;
  height: number | null;
  width: number | null;
  seed: number;
  perPrompt: number;
  scheduler: SchedulerName | null;
  device: string;
  dtype: 'float32' | 'float16' | 'bfloat16';
}

/** Checks the shared flags and reads the prompts; every error is a usage error (exit 2) raised before any model loads. */
export async function readSamplingSettings(values: FlagValues<typeof SAMPLING_FLAGS>): Promise<SamplingSettings> {
  const prompts: string[] = [...values.prompt];
  if (values.prompt_file) {
    try {
      prompts.push(...(await readPromptFile(values.prompt_file)));
    } catch (e) {
      throw new CliError(`--prompt_file: ${(e as Error).message}`, 2);
    }
  }
  if (values.prompts) {
    try {
      prompts.push(...(await loadPromptSet(values.prompts)));
    } catch (e) {
      throw new CliError(`--prompts: ${(e as Error).message}`, 2);
    }
  }
  if (prompts.length === 0) throw new CliError(`give --prompt, --prompt_file or --prompts (${PROMPT_SET_NAMES.join(', ')}, a file, a folder or a Hub dataset)`, 2);
  return {
    prompts,
    negativePrompt: values.negative_prompt,
    steps: values.num_inference_steps,
    guidanceScale: values.guidance_scale,
    guidanceRescale: values.guidance_rescale,
    height: values.height,
    width: values.width,
    seed: values.seed,
    perPrompt: values.num_images_per_prompt,
    scheduler: values.scheduler as SchedulerName | null,
    device: resolveDeviceFlag(values.device, -1, torch.cuda.isAvailable() ? torch.cuda.deviceCount() : 0),
    dtype: values.torch_dtype as SamplingSettings['dtype'],
  };
}

/** Says on stderr which device renders, and warns when --device auto falls back to the CPU though CUDA was expected. */
export function reportDevice(s: SamplingSettings, flag: string): void {
  console.error(`device: ${torch.describeDevice(s.device)}`);
  const missing = flag === 'auto' && s.device === 'cpu' ? torch.cudaExpectedButMissing() : null;
  if (missing) console.error(`WARNING: rendering on the CPU: ${missing}; diffusion-dpo doctor says more`);
}

/** A UNet folder: <x>/config.json, or <x>/unet/config.json (a pipeline or a training checkpoint). */
export function unetFolder(path: string): string {
  if (existsSync(join(path, 'config.json'))) return path;
  if (existsSync(join(path, 'unet', 'config.json'))) return join(path, 'unet');
  throw new CliError(`${path}: no UNet here (expected config.json or unet/config.json)`);
}

/**
 * Everything that can be checked from config files before a model loads or an image is made: every
 * UNet fits the pipeline (SD vs SDXL, latent channels, cross-attention width), and --height and
 * --width are multiples of what the VAE and each UNet need.
 */
export function checkBeforeSampling(modelPath: string, unetPaths: string[], s: SamplingSettings): void {
  try {
    const shape = readPipelineShape(modelPath);
    const unets = [shape.unet, ...unetPaths.map((u) => checkUNetFits(shape, unetFolder(u)))];
    for (const unet of unets) {
      if (s.height !== null) checkImageSide(shape, '--height', s.height, unet);
      if (s.width !== null) checkImageSide(shape, '--width', s.width, unet);
    }
  } catch (e) {
    if (e instanceof CompatibilityError) throw new CliError(e.message, 2);
    throw e;
  }
}

/** Tells which prompts are longer than the tokenizer reads (CLIP keeps the first 77 tokens, as diffusers). */
export function warnTruncatedPrompts(prompts: string[], tokenizer: CLIPTokenizer | null, log: (m: string) => void): void {
  if (!tokenizer) return;
  prompts.forEach((p, i) => {
    const n = tokenizer.encodeUntruncated(p).length;
    if (n > tokenizer.modelMaxLength) {
      log(`prompt ${i} is ${n} tokens; the text encoder reads the first ${tokenizer.modelMaxLength} (with its start and end tokens), the rest is ignored, as in diffusers: '${p.slice(0, 60)}...'`);
    }
  });
}

/** Replaces the pipeline's UNet by the one in `path` (see unetFolder). */
export function swapUNet(p: PipelineComponents, path: string, s: SamplingSettings): void {
  const unet = loadUNet(unetFolder(path), { device: s.device, dtype: s.dtype });
  p.unet.dispose();
  p.unet = unet;
}

export interface RenderedImage {
  file: string;
  prompt: string;
  seed: number;
}

/**
 * Renders every prompt x seed into `outDir` as `<prompt index>-<seed>.png`, each image from its own
 * CPU generator seeded `seed + k`, so any image can be regenerated alone. An image for which
 * `keep(file, promptIndex, seed)` is true is already there (eval reuses what matches its settings):
 * it is listed, not rendered.
 */
export async function renderImages(p: PipelineComponents, modelPath: string, s: SamplingSettings, outDir: string,
  tags: Record<string, string>, label = '', keep: (file: string, promptIndex: number, seed: number) => boolean = () => false,
): Promise<{ images: RenderedImage[]; width: number; height: number }> {
  const schedulerConfig = JSON.parse(readFileSync(join(modelPath, 'scheduler', 'scheduler_config.json'), 'utf8')) as Record<string, unknown>;
  const makeScheduler = () => (s.scheduler ? createScheduler(s.scheduler, schedulerConfig) : schedulerFromConfig(schedulerConfig));
  makeScheduler().dispose(); // an unknown --scheduler fails before any work
  const tokenizer = existsSync(join(modelPath, 'tokenizer')) ? CLIPTokenizer.fromFolder(join(modelPath, 'tokenizer')) : null;
  const tokenizer2 = existsSync(join(modelPath, 'tokenizer_2')) ? CLIPTokenizer.fromFolder(join(modelPath, 'tokenizer_2')) : null;
  warnTruncatedPrompts(s.prompts, tokenizer ?? tokenizer2, (m) => console.error(`[${label || 'sample'}] ${m}`));
  const size = (p.unet.config.sampleSize ?? 64) * vaeScaleFactor(p);
  const height = s.height ?? size;
  const width = s.width ?? size;
  const guidance = s.guidanceScale ?? (p.kind === 'sdxl' ? 5.0 : 7.5);
  mkdirSync(outDir, { recursive: true });
  const images: RenderedImage[] = [];
  const fileOf = (pi: number, seed: number) => join(outDir, `${String(pi).padStart(3, '0')}-${seed}.png`);
  let total = 0;
  for (let pi = 0; pi < s.prompts.length; pi++) for (let k = 0; k < s.perPrompt; k++) if (!keep(fileOf(pi, s.seed + k), pi, s.seed + k)) total++;
  let done = 0;
  const t0 = Date.now();
  for (const [pi, prompt] of s.prompts.entries()) {
    for (let k = 0; k < s.perPrompt; k++) {
      const seed = s.seed + k;
      const file = fileOf(pi, seed);
      if (keep(file, pi, seed)) {
        images.push({ file, prompt, seed });
        continue;
      }
      const pixels = torch.tidy(() => {
        const r = generate({ pipeline: p, scheduler: makeScheduler(), tokenizer, tokenizer2 }, {
          prompts: [prompt], negativePrompts: s.negativePrompt !== null ? [s.negativePrompt] : null,
          numInferenceSteps: s.steps, guidanceScale: guidance, guidanceRescale: s.guidanceRescale, height, width,
          generator: new torch.Generator('cpu', seed),
        });
        return Buffer.from(imagesToBytes(r.images));
      });
      const encoded = await sharp(pixels, { raw: { width, height, channels: 3 } }).png().toBuffer();
      writeFileAtomic(file, addPngText(encoded, {
        prompt, negative_prompt: s.negativePrompt ?? '', seed: String(seed), ...tags,
        num_inference_steps: String(s.steps), guidance_scale: String(guidance), guidance_rescale: String(s.guidanceRescale),
        scheduler: s.scheduler ?? String(schedulerConfig._class_name), torch_dtype: s.dtype, software: 'diffusion-dpo',
      }));
      images.push({ file, prompt, seed });
      done++;
      const perImage = (Date.now() - t0) / 1000 / done;
      console.error(`[${label || 'sample'}] ${done}/${total} ${file} (${perImage.toFixed(1)} s/image, ${Math.round(perImage * (total - done))} s left)`);
    }
  }
  return { images, width, height };
}

/** A grid PNG: one row per prompt, one column per image of that prompt. */
export async function writeGrid(files: string[], perRow: number, width: number, height: number, path: string): Promise<void> {
  const rows = Math.ceil(files.length / perRow);
  const tiles = files.map((f, i) => ({ input: f, left: (i % perRow) * width, top: Math.floor(i / perRow) * height }));
  writeFileAtomic(path, await sharp({ create: { width: width * perRow, height: height * rows, channels: 3, background: '#ffffff' } })
    .composite(tiles).png().toBuffer());
}
