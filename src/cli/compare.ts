// `diffusion-dpo compare`: the base pipeline against one or more trained UNets (DPO runs, or
// checkpoints of one run) on the same prompts and seeds, as the reference's quick_samples notebook
// does, into one self-contained HTML page.
import { basename, join } from 'node:path';
import { resolveModel } from '../hub/index.js';
import { loadPipeline, disposePipeline } from '../models/index.js';
import { writeFileAtomic } from '../models/loading.js';
import { flagsHelp } from '../util/flags.js';
import { parseCommandFlags } from './args.js';
import { compareHtml, type CompareColumn } from './compare_html.js';
import { CliError } from './errors.js';
import { SAMPLING_FLAGS, SAMPLING_HELP, checkBeforeSampling, readSamplingSettings, reportDevice, renderImages, swapUNet } from './sampling_flags.js';
import type { Command } from './main.js';
import { checkLoraPath, LORA_SCALE_FLAG, mergeLoraIntoPipeline, reloadComponents } from './lora_flags.js';
import type { LoraComponent } from '../models/index.js';

const COMPARE_FLAGS = {
  unet: { type: 'string', default: null, multiple: true, valueName: 'U', help: 'a trained UNet: folder with config.json, or a folder/Hub id with unet/ (repeatable)' },
  lora: { type: 'string', default: null, multiple: true, valueName: 'L', help: 'a LoRA file or folder (ours, diffusers\' or kohya\'s), merged into the base pipeline for a column of its own (repeatable)' },
  label: { type: 'string', default: null, multiple: true, valueName: 'L', help: 'a column title per --unet then per --lora, in order (default: the folder or file name)' },
  ...LORA_SCALE_FLAG,
} as const;

const HELP = `usage: diffusion-dpo compare --pretrained_model_name_or_path M (--unet U | --lora L) [...] (--prompt P ... | --prompt_file F | --prompts SET) [options]

Renders every prompt and seed with the pipeline's own UNet ("base"), with each --unet, and with the
base pipeline plus each --lora, then
writes <output_dir>/index.html: one row per prompt and seed, one column per model.

options:
${SAMPLING_HELP}
${flagsHelp(COMPARE_FLAGS, { width: 28 })}

--output_dir defaults to compare/ (images in <output_dir>/<column>/).`;

/** A folder-safe column name. */
const slug = (s: string) => s.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '') || 'unet';

export const compareCommand: Command = {
  summary: 'base vs trained UNets on the same prompts and seeds, as one HTML page',
  async run(argv) {
    const { values, given } = parseCommandFlags('compare', { ...SAMPLING_FLAGS, ...COMPARE_FLAGS }, argv);
    if (values.help) {
      console.log(HELP);
      return 0;
    }
    if (!values.pretrained_model_name_or_path) throw new CliError(`--pretrained_model_name_or_path is required\n\n${HELP}`, 2);
    const unets = values.unet;
    const loras = values.lora;
    if (unets.length + loras.length === 0) throw new CliError('give at least one --unet or --lora to compare against the base pipeline', 2);
    const labels = values.label;
    const models = unets.length + loras.length;
    if (labels.length > 0 && labels.length !== models) throw new CliError(`${labels.length} --label for ${models} --unet and --lora: give one per model, or none`, 2);
    if (given.has('lora_scale') && loras.length === 0) throw new CliError('--lora_scale applies to --lora', 2);
    for (const l of loras) checkLoraPath(l);
    const s = await readSamplingSettings(values);
    reportDevice(s, values.device);
    const model = values.pretrained_model_name_or_path;
    const out = values.output_dir ?? 'compare';
    const sources = [...unets, ...loras];
    const names = ['base', ...sources.map((u, i) => labels[i] ?? basename(u.replace(/\/+$/, '')))];
    const folders = names.map((n, i) => `${String(i).padStart(2, '0')}-${slug(n)}`);
    const modelPath = await resolveModel(model, { revision: values.revision ?? undefined });
    const unetPaths = await Promise.all(unets.map((u) => resolveModel(u)));
    checkBeforeSampling(modelPath, unetPaths, s); // every UNet, before the base column is rendered
    const p = loadPipeline(modelPath, { device: s.device, dtype: s.dtype });
    const columns: CompareColumn[] = [];
    let rows: { prompt: string; seed: number }[] = [];
    try {
      let merged: LoraComponent[] = [];
      for (let c = 0; c < names.length; c++) {
        const unetIndex = c - 1;
        const loraIndex = c - 1 - unets.length;
        if (c > 0 && unetIndex < unets.length) swapUNet(p, unetPaths[unetIndex]!, s);
        let tags: Record<string, string> = { model, unet: c > 0 && unetIndex < unets.length ? unets[unetIndex]! : '' };
        if (loraIndex >= 0) {
          // each LoRA column starts from the base models: those the last column changed are reloaded
          reloadComponents(p, modelPath, loraIndex === 0 ? (unets.length ? ['unet'] : []) : merged, s);
          merged = mergeLoraIntoPipeline(p, loras[loraIndex]!, values.lora_scale, (m) => console.error(`[${names[c]}] ${m}`));
          tags = { model, lora: loras[loraIndex]!, lora_scale: String(values.lora_scale) };
        }
        const r = await renderImages(p, modelPath, s, join(out, folders[c]!), tags, names[c]);
        rows = r.images.map(({ prompt, seed }) => ({ prompt, seed }));
        columns.push({ label: names[c]!, source: c > 0 ? sources[c - 1]! : model, files: r.images.map((i) => i.file) });
      }
    } finally {
      disposePipeline(p);
    }
    const page = join(out, 'index.html');
    writeFileAtomic(page, compareHtml(`${model}: base vs ${names.slice(1).join(', ')}`, rows, columns, {
      num_inference_steps: String(s.steps), guidance_scale: String(s.guidanceScale ?? 'pipeline default'),
      scheduler: s.scheduler ?? 'pipeline default', seed: String(s.seed),
    }));
    console.log(JSON.stringify({ output_dir: out, page, columns: names, images_per_column: rows.length }, null, 2));
    return 0;
  },
};
