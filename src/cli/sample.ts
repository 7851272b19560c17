// `diffusion-dpo sample`: text-to-image with flags named after diffusers' pipeline arguments. PNGs
// carry the prompt, seed, model and settings in text chunks; a grid shows them all.
import { join } from 'node:path';
import { resolveModel } from '../hub/index.js';
import { loadPipeline, disposePipeline } from '../models/index.js';
import { flagsHelp } from '../util/flags.js';
import { parseCommandFlags } from './args.js';
import { CliError } from './errors.js';
import { SAMPLING_FLAGS, SAMPLING_HELP, checkBeforeSampling, readSamplingSettings, reportDevice, renderImages, swapUNet, writeGrid } from './sampling_flags.js';
import type { Command } from './main.js';
import { checkLoraPath, LORA_SCALE_FLAG, mergeLoraIntoPipeline } from './lora_flags.js';

const SAMPLE_FLAGS = {
  unet: { type: 'string', default: null, valueName: 'U', help: 'a separate UNet (folder with config.json, or a folder/Hub id with unet/), e.g. mhdang/dpo-sd1.5-text2image-v1' },
  lora: { type: 'string', default: null, multiple: true, valueName: 'L', help: 'a LoRA file, or a folder with pytorch_lora_weights.safetensors (ours, diffusers\' or kohya\'s), merged into the models before sampling (repeatable: applied in order)' },
  ...LORA_SCALE_FLAG,
} as const;

const HELP = `usage: diffusion-dpo sample --pretrained_model_name_or_path M (--prompt P ... | --prompt_file F | --prompts SET) [options]

options (diffusers' pipeline argument names):
${SAMPLING_HELP}
${flagsHelp(SAMPLE_FLAGS, { width: 28 })}

writes <output_dir>/<prompt index>-<seed>.png and grid.png (one row per prompt); --output_dir defaults to samples/.`;

export const sampleCommand: Command = {
  summary: 'generate images from prompts with any SD/SDXL pipeline or trained UNet',
  async run(argv) {
    const { values, given } = parseCommandFlags('sample', { ...SAMPLING_FLAGS, ...SAMPLE_FLAGS }, argv);
    if (values.help) {
      console.log(HELP);
      return 0;
    }
    if (!values.pretrained_model_name_or_path) throw new CliError(`--pretrained_model_name_or_path is required\n\n${HELP}`, 2);
    const s = await readSamplingSettings(values);
    reportDevice(s, values.device);
    const model = values.pretrained_model_name_or_path;
    const unet = values.unet;
    const out = values.output_dir ?? 'samples';
    const modelPath = await resolveModel(model, { revision: values.revision ?? undefined });
    const unetPath = unet ? await resolveModel(unet) : null;
    checkBeforeSampling(modelPath, unetPath ? [unetPath] : [], s);
    if (given.has('lora_scale') && values.lora.length === 0) throw new CliError('--lora_scale applies to --lora', 2);
    for (const l of values.lora) checkLoraPath(l);
    const p = loadPipeline(modelPath, { device: s.device, dtype: s.dtype });
    try {
      if (unetPath) swapUNet(p, unetPath, s);
      for (const l of values.lora) mergeLoraIntoPipeline(p, l, values.lora_scale, (m) => console.error(m));
      const r = await renderImages(p, modelPath, s, out, { model, unet: unet ?? '', ...(values.lora.length ? { lora: values.lora.join(', '), lora_scale: String(values.lora_scale) } : {}) });
      const grid = join(out, 'grid.png');
      await writeGrid(r.images.map((i) => i.file), s.perPrompt, r.width, r.height, grid);
      console.log(JSON.stringify({ output_dir: out, images: r.images.length, grid }, null, 2));
      return 0;
    } finally {
      disposePipeline(p);
    }
  },
};
