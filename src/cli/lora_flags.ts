// LoRA files in `sample`, `compare` and `merge-lora`: folding a file (ours, diffusers' or kohya's)
// into a loaded pipeline's UNet and text encoders, and putting the base weights back for the next
// comparison column.
import { join } from 'node:path';
import * as torch from '../torch/index.js';
import {
  disposeLoraFile, loadCLIPTextModel, loadCLIPTextModelWithProjection, loadUNet, loraFilePath, mergeLora, readLoraFile,
  type LoraComponent, type PipelineComponents,
} from '../models/index.js';
import { CliError } from './errors.js';

export const LORA_SCALE_FLAG = {
  lora_scale: { type: 'float', default: 1, valueName: 'S', help: 'how much of each --lora to apply: its weight change times S (diffusers\' lora_scale)' },
} as const;

/** Checks that a LoRA path names a file (or a folder holding one) before any model loads. */
export function checkLoraPath(path: string): string {
  try {
    return loraFilePath(path);
  } catch (e) {
    throw new CliError(`--lora: ${(e as Error).message}`, 2);
  }
}

/** Folds the file's adapters into the pipeline's models (weight change times `scale`); returns the components it changed. */
export function mergeLoraIntoPipeline(p: PipelineComponents, path: string, scale: number, log: (m: string) => void): LoraComponent[] {
  const file = readLoraFile(path, { unet: p.unet, text_encoder: p.textEncoder, text_encoder_2: p.textEncoder2 });
  try {
    mergeLora(file, scale);
    const touched = [...new Set(file.layers.map((l) => l.component))];
    log(`LoRA ${file.file} (${file.format} layout): ${file.layers.length} layers of the ${touched.join(' and ')} merged at scale ${scale}` +
      `${file.zeroLayers ? ` (${file.zeroLayers} all-zero filler layers skipped)` : ''}`);
    return touched;
  } finally {
    disposeLoraFile(file);
  }
}

/** Reloads the given components from the pipeline folder (undoing a merge exactly). */
export function reloadComponents(p: PipelineComponents, modelPath: string, components: LoraComponent[], o: { device: torch.Device; dtype: torch.DType }): void {
  for (const c of components) {
    if (c === 'unet') {
      const unet = loadUNet(join(modelPath, 'unet'), o);
      p.unet.dispose();
      p.unet = unet;
    } else if (c === 'text_encoder' && p.textEncoder) {
      const te = loadCLIPTextModel(join(modelPath, 'text_encoder'), o);
      p.textEncoder.dispose();
      p.textEncoder = te;
    } else if (c === 'text_encoder_2' && p.textEncoder2) {
      const te = loadCLIPTextModelWithProjection(join(modelPath, 'text_encoder_2'), o);
      p.textEncoder2.dispose();
      p.textEncoder2 = te;
    }
  }
}
