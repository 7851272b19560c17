// kind "pipeline_sample": StableDiffusion(XL)Pipeline on the tiny models with given initial latents:
// prompt embeddings, the latents after each scheduler step, the final latents and the image.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../../torch/index.js';
import { loadPipeline, disposePipeline } from '../../models/index.js';
import { generate } from '../../pipelines/text_to_image.js';
import { schedulerFromConfig } from '../../schedulers/samplers.js';
import { CLIPTokenizer } from '../../tokenizers/clip.js';
import type { FixtureCase } from '../case.js';
import { compareTensors, type Comparison } from '../compare.js';

interface PipelineCase {
  model: string;
  prompts: string[];
  negative_prompts: string[] | null;
  guidance_scale: number;
  num_inference_steps: number;
}

export function runPipelineCase(c: FixtureCase): Comparison[] {
  const j = c.json as unknown as PipelineCase;
  const folder = join(c.root, j.model);
  const pipeline = loadPipeline(folder);
  const out: Comparison[] = [];
  const check = (name: string, t: torch.Tensor) => {
    if (c.has(name)) out.push(compareTensors(name, t, c.tensor(name), c.tolerance(name) ?? { atol: 1e-4, rtol: 1e-4 }));
  };
  try {
    const scheduler = schedulerFromConfig(JSON.parse(readFileSync(join(folder, 'scheduler', 'scheduler_config.json'), 'utf8')) as Record<string, unknown>);
    const r = generate({
      pipeline, scheduler,
      tokenizer: CLIPTokenizer.fromFolder(join(folder, 'tokenizer')),
      tokenizer2: pipeline.kind === 'sdxl' ? CLIPTokenizer.fromFolder(join(folder, 'tokenizer_2')) : null,
    }, {
      prompts: j.prompts, negativePrompts: j.negative_prompts, numInferenceSteps: j.num_inference_steps, guidanceScale: j.guidance_scale,
      height: 32, width: 32, latents: c.tensor('latents_init'),
      onStep: (i, _t, latents) => check(`latents_after_step${i}`, latents),
    });
    check('prompt_embeds', r.promptEmbeds);
    check('negative_prompt_embeds', r.negativePromptEmbeds);
    if (r.pooledPromptEmbeds) check('pooled_prompt_embeds', r.pooledPromptEmbeds);
    if (r.negativePooledPromptEmbeds) check('negative_pooled_prompt_embeds', r.negativePooledPromptEmbeds);
    check('latents_final', r.latents);
    check('image', r.images);
  } finally {
    disposePipeline(pipeline);
  }
  return out;
}
