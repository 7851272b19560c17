// `diffusion-dpo sample`: text-to-image with flags named after diffusers' pipeline arguments. Each
// image gets its own generator (seed, seed + 1, ... per prompt), so any image can be regenerated
// alone; PNGs carry the prompt, seed, model and settings in text chunks; a grid shows them all.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import * as torch from '../torch/index.js';
import { resolveModel } from '../hub/index.js';
import { loadPipeline, loadUNet, disposePipeline } from '../models/index.js';
import { writeFileAtomic } from '../models/loading.js';
import { generate, vaeScaleFactor } from '../pipelines/text_to_image.js';
import { addPngText } from '../pipelines/png.js';
import { NOTEBOOK_PROMPTS, readPromptFile } from '../pipelines/prompts.js';
import { createScheduler, schedulerFromConfig, type SchedulerName } from '../schedulers/samplers.js';
import { CLIPTokenizer } from '../tokenizers/clip.js';
import { parseCommandArgs } from './args.js';
import { CliError } from './errors.js';
import type { Command } from './main.js';

const HELP = `usage: diffusion-dpo sample --pretrained_model_name_or_path M (--prompt P ... | --prompt_file F | --prompts notebook) [options]

options (diffusers' pipeline argument names):
  --pretrained_model_name_or_path M  pipeline folder, Hub id, or a training output_dir / checkpoint
  --unet U                 a separate UNet (folder with config.json, or a folder/Hub id with unet/), e.g. mhdang/dpo-sd1.5-text2image-v1
  --prompt P               a prompt (repeatable)
  --prompt_file F          prompts, one per line (.txt) or {"prompt": ...} per line (.jsonl)
  --prompts notebook       the reference notebook's 16 example prompts
  --negative_prompt N      one negative prompt for all
  --num_inference_steps N  default 50
  --guidance_scale G       default 7.5 (SD) or 5.0 (SDXL), as the reference notebook
  --guidance_rescale R     default 0
  --height H, --width W    default: the UNet's sample_size x the VAE's scale factor (8 for real models)
  --seed S                 default 0; image k of a prompt uses seed + k
  --num_images_per_prompt K  default 1
  --scheduler NAME         ddpm, ddim, pndm, euler, euler_ancestral, dpmpp_2m, dpmpp_2m_karras (default: the pipeline's)
  --output_dir D           default samples/
  --device D               default cuda when available, else cpu
  -h, --help               this text`;

/** A UNet folder: <x>/config.json, or <x>/unet/config.json (a pipeline or a training checkpoint). */
export function unetFolder(path: string): string {
  if (existsSync(join(path, 'config.json'))) return path;
  if (existsSync(join(path, 'unet', 'config.json'))) return join(path, 'unet');
  throw new CliError(`${path}: no UNet here (expected config.json or unet/config.json)`);
}

export const sampleCommand: Command = {
  summary: 'generate images from prompts with any SD/SDXL pipeline or trained UNet',
  async run(argv) {
    const { values } = parseCommandArgs('sample', argv, {
      pretrained_model_name_or_path: { type: 'string' }, unet: { type: 'string' }, prompt: { type: 'string', multiple: true },
      prompt_file: { type: 'string' }, prompts: { type: 'string' }, negative_prompt: { type: 'string' },
      num_inference_steps: { type: 'string' }, guidance_scale: { type: 'string' }, guidance_rescale: { type: 'string' },
      height: { type: 'string' }, width: { type: 'string' }, seed: { type: 'string' }, num_images_per_prompt: { type: 'string' },
      scheduler: { type: 'string' }, output_dir: { type: 'string' }, device: { type: 'string' }, revision: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      console.log(HELP);
      return 0;
    }
    const num = (name: string, v: unknown, integer = true): number | undefined => {
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new CliError(`--${name} must be ${integer ? 'an integer' : 'a number'}, got '${String(v)}'`, 2);
      return n;
    };
    if (!values.pretrained_model_name_or_path) throw new CliError(`--pretrained_model_name_or_path is required\n\n${HELP}`, 2);
    let prompts: string[] = [...((values.prompt as string[] | undefined) ?? [])];
    if (values.prompt_file) prompts.push(...readPromptFile(values.prompt_file as string));
    if (values.prompts) {
      if (values.prompts !== 'notebook') throw new CliError(`--prompts: unknown prompt set '${String(values.prompts)}' (available: notebook)`, 2);
      prompts = [...prompts, ...NOTEBOOK_PROMPTS];
    }
    if (prompts.length === 0) throw new CliError('give --prompt, --prompt_file or --prompts notebook', 2);
    const device = (values.device as string | undefined) ?? (torch.cuda.isAvailable() ? 'cuda' : 'cpu');
    let modelPath: string;
    try {
      modelPath = await resolveModel(values.pretrained_model_name_or_path as string, { revision: values.revision as string | undefined });
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    const p = loadPipeline(modelPath, { device });
    try {
      if (values.unet) {
        const unetPath = unetFolder(await resolveModel(values.unet as string));
        p.unet.dispose();
        p.unet = loadUNet(unetPath, { device });
      }
      const schedulerConfig = JSON.parse(readFileSync(join(modelPath, 'scheduler', 'scheduler_config.json'), 'utf8')) as Record<string, unknown>;
      const makeScheduler = () => (values.scheduler ? createScheduler(values.scheduler as SchedulerName, schedulerConfig) : schedulerFromConfig(schedulerConfig));
      makeScheduler().dispose(); // an unknown --scheduler fails before any work
      const tokenizer = existsSync(join(modelPath, 'tokenizer')) ? CLIPTokenizer.fromFolder(join(modelPath, 'tokenizer')) : null;
      const tokenizer2 = existsSync(join(modelPath, 'tokenizer_2')) ? CLIPTokenizer.fromFolder(join(modelPath, 'tokenizer_2')) : null;
      const size = (p.unet.config.sampleSize ?? 64) * vaeScaleFactor(p);
      const height = num('height', values.height) ?? size;
      const width = num('width', values.width) ?? size;
      const steps = num('num_inference_steps', values.num_inference_steps) ?? 50;
      const guidance = num('guidance_scale', values.guidance_scale, false) ?? (p.kind === 'sdxl' ? 5.0 : 7.5);
      const rescale = num('guidance_rescale', values.guidance_rescale, false) ?? 0;
      const seed = num('seed', values.seed) ?? 0;
      const perPrompt = num('num_images_per_prompt', values.num_images_per_prompt) ?? 1;
      const out = (values.output_dir as string | undefined) ?? 'samples';
      mkdirSync(out, { recursive: true });
      const files: string[] = [];
      const total = prompts.length * perPrompt;
      const t0 = Date.now();
      for (const [pi, prompt] of prompts.entries()) {
        for (let k = 0; k < perPrompt; k++) {
          const imageSeed = seed + k;
          const png = await torch.tidy(() => {
            const r = generate({ pipeline: p, scheduler: makeScheduler(), tokenizer, tokenizer2 }, {
              prompts: [prompt], negativePrompts: values.negative_prompt ? [values.negative_prompt as string] : null,
              numInferenceSteps: steps, guidanceScale: guidance, guidanceRescale: rescale, height, width,
              generator: new torch.Generator('cpu', imageSeed),
            });
            const px = r.images.mul(255).round().clamp(0, 255).to('uint8').toTypedArray() as Uint8Array;
            return Buffer.from(px);
          });
          const encoded = await sharp(png, { raw: { width, height, channels: 3 } }).png().toBuffer();
          const file = join(out, `${String(pi).padStart(3, '0')}-${imageSeed}.png`);
          writeFileAtomic(file, addPngText(encoded, {
            prompt, negative_prompt: (values.negative_prompt as string | undefined) ?? '', seed: String(imageSeed),
            model: values.pretrained_model_name_or_path as string, unet: (values.unet as string | undefined) ?? '',
            num_inference_steps: String(steps), guidance_scale: String(guidance), scheduler: (values.scheduler as string | undefined) ?? String(schedulerConfig._class_name),
            software: 'diffusion-dpo',
          }));
          files.push(file);
          const done = files.length;
          console.error(`[sample] ${done}/${total} ${file} (${((Date.now() - t0) / 1000 / done).toFixed(1)} s/image)`);
        }
      }
      // a grid: one row per prompt, one column per image
      const tiles = files.map((f, i) => ({ input: f, left: (i % perPrompt) * width, top: Math.floor(i / perPrompt) * height }));
      writeFileAtomic(join(out, 'grid.png'), await sharp({ create: { width: width * perPrompt, height: height * prompts.length, channels: 3, background: '#ffffff' } })
        .composite(tiles).png().toBuffer());
      console.log(JSON.stringify({ output_dir: out, images: files.length, grid: join(out, 'grid.png') }, null, 2));
      return 0;
    } catch (e) {
      if (e instanceof CliError) throw e;
      throw new CliError((e as Error).message);
    } finally {
      disposePipeline(p);
    }
  },
};
