// `diffusion-dpo merge-lora`: a pipeline with a LoRA file folded into its weights (UNet, and text
// encoders when the file adapts them), written as a diffusers pipeline folder: sample, compare,
// train --unet_init and diffusers load it like any other. The merge is computed in float32 and
// rounded once to the saved dtype.
import { existsSync, readdirSync } from 'node:fs';
import { resolveModel } from '../hub/index.js';
import { disposePipeline, loadPipeline, savePipeline } from '../models/index.js';
import { flagsHelp } from '../util/flags.js';
import { HELP_FLAG, parseCommandFlags } from './args.js';
import { CliError } from './errors.js';
import { checkLoraPath, LORA_SCALE_FLAG, mergeLoraIntoPipeline } from './lora_flags.js';
import type { Command } from './main.js';

const FLAGS = {
  pretrained_model_name_or_path: { type: 'string', default: null, valueName: 'M', help: 'the base pipeline: folder or Hub id' },
  revision: { type: 'string', default: null, help: 'Hub revision of the pipeline' },
  lora: { type: 'string', default: null, valueName: 'L', help: 'a LoRA file, or a folder with pytorch_lora_weights.safetensors (ours, diffusers\' or kohya\'s)' },
  output_dir: { type: 'string', default: null, valueName: 'O', help: 'where the merged pipeline goes (a new or empty folder)' },
  torch_dtype: { type: 'string', default: 'float32', choices: ['float32', 'float16', 'bfloat16'], valueName: 'T', help: 'the dtype the merged weights are saved in' },
  ...LORA_SCALE_FLAG,
  ...HELP_FLAG,
} as const;

const HELP = `usage: diffusion-dpo merge-lora --pretrained_model_name_or_path M --lora L --output_dir O [options]

Folds the LoRA into the pipeline's UNet (and text encoders, when the file adapts them) and writes
the whole pipeline to O in diffusers' layout.

options:
${flagsHelp(FLAGS, { width: 28 })}`;

export const mergeLoraCommand: Command = {
  summary: 'fold a LoRA file into a pipeline and save it',
  async run(argv) {
    const { values } = parseCommandFlags('merge-lora', FLAGS, argv);
    if (values.help) {
      console.log(HELP);
      return 0;
    }
    for (const f of ['pretrained_model_name_or_path', 'lora', 'output_dir'] as const) if (!values[f]) throw new CliError(`--${f} is required\n\n${HELP}`, 2);
    const out = values.output_dir!;
    if (existsSync(out) && readdirSync(out).length > 0) throw new CliError(`--output_dir ${out} is not empty: give a new or empty folder`, 2);
    const lora = checkLoraPath(values.lora!);
    const modelPath = await resolveModel(values.pretrained_model_name_or_path!, { revision: values.revision ?? undefined });
    // merged in float32, then saved in the asked dtype
    const p = loadPipeline(modelPath, { device: 'cpu' });
    try {
      const changed = mergeLoraIntoPipeline(p, lora, values.lora_scale, (m) => console.error(m));
      if (values.torch_dtype !== 'float32') for (const m of [p.unet, p.vae, p.textEncoder, p.textEncoder2]) m?.to(values.torch_dtype as 'float16' | 'bfloat16');
      savePipeline(out, p);
      console.log(JSON.stringify({ output_dir: out, merged: changed, lora, lora_scale: values.lora_scale, torch_dtype: values.torch_dtype }, null, 2));
      return 0;
    } finally {
      disposePipeline(p);
    }
  },
};
