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

const COMPARE_FLAGS = {
  unet: { type: 'string', default: null, multiple: true, valueName: 'U', help: 'a trained UNet: folder with config.json, or a folder/Hub id with unet/ (repeatable)' },
  label: { type: 'string', default: null, multiple: true, valueName: 'L', help: 'a column title per --unet, in order (default: the folder name)' },
} as const;

const HELP = `usage: diffusion-dpo compare --pretrained_model_name_or_path M --unet U [--unet U2 ...] (--prompt P ... | --prompt_file F | --prompts SET) [options]

Renders every prompt and seed with the pipeline's own UNet ("base") and with each --unet, then
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
    const { values } = parseCommandFlags('compare', { ...SAMPLING_FLAGS, ...COMPARE_FLAGS }, argv);
    if (values.help) {
      console.log(HELP);
      return 0;
    }
    if (!values.pretrained_model_name_or_path) throw new CliError(`--pretrained_model_name_or_path is required\n\n${HELP}`, 2);
    const unets = values.unet;
    if (unets.length === 0) throw new CliError('give at least one --unet to compare against the base pipeline', 2);
    const labels = values.label;
    if (labels.length > 0 && labels.length !== unets.length) throw new CliError(`${labels.length} --label for ${unets.length} --unet: give one per --unet, or none`, 2);
    const s = await readSamplingSettings(values);
    reportDevice(s, values.device);
    const model = values.pretrained_model_name_or_path;
    const out = values.output_dir ?? 'compare';
    const names = ['base', ...unets.map((u, i) => labels[i] ?? basename(u.replace(/\/+$/, '')))];
    const folders = names.map((n, i) => `${String(i).padStart(2, '0')}-${slug(n)}`);
    const modelPath = await resolveModel(model, { revision: values.revision ?? undefined });
    const unetPaths = await Promise.all(unets.map((u) => resolveModel(u)));
    checkBeforeSampling(modelPath, unetPaths, s); // every UNet, before the base column is rendered
    const p = loadPipeline(modelPath, { device: s.device, dtype: s.dtype });
    const columns: CompareColumn[] = [];
    let rows: { prompt: string; seed: number }[] = [];
    try {
      for (let c = 0; c < names.length; c++) {
        if (c > 0) swapUNet(p, unetPaths[c - 1]!, s);
        const r = await renderImages(p, modelPath, s, join(out, folders[c]!), { model, unet: c > 0 ? unets[c - 1]! : '' }, names[c]);
        rows = r.images.map(({ prompt, seed }) => ({ prompt, seed }));
        columns.push({ label: names[c]!, source: c > 0 ? unets[c - 1]! : model, files: r.images.map((i) => i.file) });
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
