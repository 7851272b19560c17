// Drawing with a demo pipeline in memory, one image at a time: the make-demo-base script and the tests use it
// to ask whether a pipeline draws the domain (classifier.ts reads the results). Each prompt x seed
// starts from the noise of its own CPU generator seeded `seed`, as `sample` and `eval` do, so a
// drawing here equals the one those commands make for the same prompt, seed and settings.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RawImage } from '../data/pil_resize.js';
import * as torch from '../torch/index.js';
import { disposePipeline, loadPipeline } from '../models/index.js';
import { generate, imagesToBytes, vaeScaleFactor } from '../pipelines/text_to_image.js';
import { schedulerFromConfig } from '../schedulers/samplers.js';
import { CLIPTokenizer } from '../tokenizers/clip.js';

export interface DrawOptions {
  steps?: number;
  guidance?: number;
  /** A UNet folder to draw with instead of the pipeline's. */
  unetFolder?: string;
}

export function drawWithPipeline(pipelineDir: string, jobs: readonly { prompt: string; seed: number }[], o: DrawOptions = {}): RawImage[] {
  const pipeline = loadPipeline(pipelineDir, { dtype: 'float32', unetFolder: o.unetFolder });
  const tokenizer = CLIPTokenizer.fromFolder(join(pipelineDir, 'tokenizer'));
  const schedulerConfig = JSON.parse(readFileSync(join(pipelineDir, 'scheduler', 'scheduler_config.json'), 'utf8')) as Record<string, unknown>;
  const size = (pipeline.unet.config.sampleSize ?? 8) * vaeScaleFactor(pipeline);
  try {
    return jobs.map(({ prompt, seed }) => torch.tidy(() => {
      const r = generate({ pipeline, tokenizer, tokenizer2: null, scheduler: schedulerFromConfig(schedulerConfig) }, {
        prompts: [prompt], numInferenceSteps: o.steps ?? 25, guidanceScale: o.guidance ?? 5, height: size, width: size,
        generator: new torch.Generator('cpu', seed),
      });
      return { width: size, height: size, channels: 3, data: imagesToBytes(r.images) };
    }));
  } finally {
    disposePipeline(pipeline);
  }
}
