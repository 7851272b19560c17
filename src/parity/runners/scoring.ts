// kinds "clip_score" (PickScore-style scoring with a CLIPModel: preprocessing, both towers, the
// projections, cosine scores, the logit-scaled scores and the softmax over candidates) and
// "aesthetics" (the LAION head on given embeddings).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../../torch/index.js';
import { decodeRGB } from '../../data/decode.js';
import { loadCLIPModel } from '../../models/index.js';
import { CLIPTokenizer } from '../../tokenizers/clip.js';
import { AestheticsHead } from '../../scoring/aesthetics_head.js';
import { clipImageProcessorConfig, preprocessBatch } from '../../scoring/preprocess.js';
import { tokenizeLongest } from '../../scoring/scorers.js';
import type { FixtureCase } from '../case.js';
import { compareTensors, type Comparison } from '../compare.js';

interface ClipScoreCaseJson {
  model: string;
  images: string[];
  prompts: string[];
  input_ids: number[][];
}

const FALLBACK = { atol: 3e-5, rtol: 1e-4 };

export async function runClipScoreCase(c: FixtureCase): Promise<Comparison[]> {
  const j = c.json as unknown as ClipScoreCaseJson;
  const folder = join(c.root, j.model);
  const images = await Promise.all(j.images.map(async (f) => decodeRGB(readFileSync(join(c.root, f)))));
  const model = loadCLIPModel(folder);
  try {
    const tokenizer = CLIPTokenizer.fromFolder(join(c.root, 'tokenizer'));
    const preprocess = clipImageProcessorConfig(JSON.parse(readFileSync(join(folder, 'preprocessor_config.json'), 'utf8')) as Record<string, unknown>);
    return torch.tidy(() => torch.noGrad(() => {
      const tol = (name: string) => c.tolerance(name) ?? FALLBACK;
      const out: Comparison[] = [];
      const pixels = preprocessBatch(images, preprocess);
      // PIL's bicubic is ported exactly: the pixels are held to float rounding, not the case's cross-library 0.02
      out.push(compareTensors('pixel_values', pixels, c.tensor('pixel_values'), { atol: 1e-5, rtol: 0 }));
      const { ids, mask } = tokenizeLongest(tokenizer, j.prompts, 'cpu');
      out.push(compareTensors('input_ids', ids.float(), torch.tensor(j.input_ids).float(), { atol: 0, rtol: 0 }));
      const vision = model.vision_model.forward(pixels).pooledOutput;
      const text = model.text_model.forward(ids, { attentionMask: mask }).pooledOutput;
      out.push(compareTensors('vision.pooler_output', vision, c.tensor('vision.pooler_output'), tol('image_embeds')));
      out.push(compareTensors('text.pooler_output', text, c.tensor('text.pooler_output'), tol('text_embeds')));
      const imageEmbeds = model.visual_projection.forward(vision);
      const textEmbeds = model.text_projection.forward(text);
      out.push(compareTensors('image_embeds', imageEmbeds, c.tensor('image_embeds'), tol('image_embeds')));
      out.push(compareTensors('text_embeds', textEmbeds, c.tensor('text_embeds'), tol('text_embeds')));
      const scores = torch.F.normalize(textEmbeds, 2, -1).matmul(torch.F.normalize(imageEmbeds, 2, -1).t());
      out.push(compareTensors('scores', scores, c.tensor('scores'), tol('scores')));
      const scaled = scores.mul(model.logit_scale.exp());
      out.push(compareTensors('logit_scale', model.logit_scale.reshape([1]), c.tensor('logit_scale'), { atol: 0, rtol: 0 }));
      out.push(compareTensors('scaled_scores', scaled, c.tensor('scaled_scores'), { atol: tol('scores').atol * 20, rtol: tol('scores').rtol }));
      out.push(compareTensors('probs', torch.F.softmax(scaled, -1), c.tensor('probs'), tol('scores')));
      return out;
    }));
  } finally {
    model.dispose();
  }
}

export function runAestheticsCase(c: FixtureCase): Comparison[] {
  const head = AestheticsHead.load(join(c.root, String(c.json.weights)));
  try {
    return torch.tidy(() => torch.noGrad(() => [
      compareTensors('scores', head.forward(c.tensor('embeddings')), c.tensor('scores'), c.tolerance('scores') ?? FALLBACK),
    ]));
  } finally {
    head.dispose();
  }
}
