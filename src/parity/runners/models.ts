// Model cases: UNet forward + gradients, VAE encode/decode, CLIP text encoders (SD and SDXL).
import { join } from 'node:path';
import * as torch from '../../torch/index.js';
import { encodeSdxlPrompt, loadCLIPTextModel, loadCLIPTextModelWithProjection, loadUNet, loadVAE } from '../../models/index.js';
import { CLIPTokenizer } from '../../tokenizers/clip.js';
import type { FixtureCase } from '../case.js';
import { compareTensors, type Comparison } from '../compare.js';

/** Compares `actual` with the case tensor `name` under the case's tolerance for it. */
function check(c: FixtureCase, out: Comparison[], name: string, actual: torch.Tensor): void {
  const tol = c.tolerance(name) ?? { atol: 1e-5, rtol: 1e-4 };
  out.push(compareTensors(name, actual, c.tensor(name), tol));
}

interface UNetCaseJson {
  model: string;
  timesteps: number[];
  timesteps_dtype: 'int64' | 'float32';
  watched_params: string[];
}

export function runUNetCase(c: FixtureCase): Comparison[] {
  const j = c.json as unknown as UNetCaseJson;
  const unet = loadUNet(join(c.root, j.model));
  const out: Comparison[] = [];
  try {
    unet.eval();
    const sample = c.tensor('sample').requiresGrad_();
    const ehs = c.tensor('encoder_hidden_states').requiresGrad_();
    const textEmbeds = c.has('added_cond.text_embeds') ? c.tensor('added_cond.text_embeds').requiresGrad_() : null;
    const addedCond = textEmbeds ? { textEmbeds, timeIds: c.tensor('added_cond.time_ids') } : undefined;
    const t = torch.tensor(j.timesteps, { dtype: j.timesteps_dtype === 'int64' ? 'int64' : 'float32' });
    const { sample: pred, intermediates } = unet.forward(sample, t, ehs, { addedCond, captureIntermediates: true });
    check(c, out, 'out.sample', pred);
    for (const [name, tensor] of Object.entries(intermediates!)) if (c.has(`intermediate.${name}`)) check(c, out, `intermediate.${name}`, tensor);
    const loss = pred.mul(c.tensor('R')).sum();
    check(c, out, 'loss', loss.reshape(1));
    loss.backward();
    check(c, out, 'grad.sample', sample.grad!);
    check(c, out, 'grad.encoder_hidden_states', ehs.grad!);
    if (textEmbeds) check(c, out, 'grad.added_cond.text_embeds', textEmbeds.grad!);
    const params = new Map(unet.namedParameters());
    for (const name of j.watched_params) check(c, out, `grad.param.${name}`, params.get(name)!.grad!);
  } finally {
    unet.zeroGrad();
    unet.dispose();
  }
  return out;
}

export function runVAECase(c: FixtureCase): Comparison[] {
  const j = c.json as unknown as { model: string; scaling_factor: number };
  const vae = loadVAE(join(c.root, j.model));
  const out: Comparison[] = [];
  try {
    vae.eval();
    torch.noGrad(() => {
      const dist = vae.encode(c.tensor('pixel_values'));
      check(c, out, 'latent_dist.parameters', dist.parameters);
      check(c, out, 'latent_dist.mean', dist.mean);
      check(c, out, 'latent_dist.logvar', dist.logvar);
      check(c, out, 'latent_dist.std', dist.std);
      check(c, out, 'latent_dist.var', dist.var);
      const sample = dist.mean.add(dist.std.mul(c.tensor('eps')));
      check(c, out, 'latent_dist.sample', sample);
      check(c, out, 'latents_scaled', sample.mul(vae.config.scalingFactor));
      check(c, out, 'decode.sample', vae.decode(c.tensor('z')));
      check(c, out, 'decode_of_mean.sample', vae.decode(dist.mean));
    });
  } finally {
    vae.dispose();
  }
  return out;
}

export function runTextEncoderCase(c: FixtureCase): Comparison[] {
  const j = c.json as unknown as { model: string; input_ids: number[][] };
  const model = loadCLIPTextModel(join(c.root, j.model));
  const out: Comparison[] = [];
  try {
    torch.noGrad(() => {
      const r = model.forward(torch.tensor(j.input_ids, { dtype: 'int64' }));
      check(c, out, 'last_hidden_state', r.lastHiddenState);
      check(c, out, 'pooler_output', r.pooledOutput);
      check(c, out, 'hidden_states.0', r.hiddenStates[0]!);
      check(c, out, 'hidden_states.-2', r.hiddenStates[r.hiddenStates.length - 2]!);
    });
  } finally {
    model.dispose();
  }
  return out;
}

export function runTextEncoderSDXLCase(c: FixtureCase): Comparison[] {
  const j = c.json as unknown as { model: string; prompts: string[]; input_ids_tokenizer: number[][]; input_ids_tokenizer_2: number[][] };
  const root = join(c.root, j.model);
  const te1 = loadCLIPTextModel(join(root, 'text_encoder'));
  const te2 = loadCLIPTextModelWithProjection(join(root, 'text_encoder_2'));
  const out: Comparison[] = [];
  try {
    torch.noGrad(() => {
      const a = te1.forward(torch.tensor(j.input_ids_tokenizer, { dtype: 'int64' }));
      const b = te2.forward(torch.tensor(j.input_ids_tokenizer_2, { dtype: 'int64' }));
      check(c, out, 'te1.last_hidden_state', a.lastHiddenState);
      check(c, out, 'te1.pooler_output', a.pooledOutput);
      const pen1 = a.hiddenStates[a.hiddenStates.length - 2]!;
      const pen2 = b.hiddenStates[b.hiddenStates.length - 2]!;
      check(c, out, 'te1.hidden_states.-2', pen1);
      check(c, out, 'te2.last_hidden_state', b.lastHiddenState);
      check(c, out, 'te2.hidden_states.-2', pen2);
      check(c, out, 'te2.text_embeds', b.textEmbeds);
      // train.py's encode_prompt_sdxl, as training and sampling run it: from the prompts, through both tokenizers
      const e = encodeSdxlPrompt({
        textEncoder: te1, tokenizer: CLIPTokenizer.fromFolder(join(root, 'tokenizer')),
        textEncoder2: te2, tokenizer2: CLIPTokenizer.fromFolder(join(root, 'tokenizer_2')),
      }, j.prompts);
      check(c, out, 'encode_prompt_sdxl.prompt_embeds', e.promptEmbeds);
      check(c, out, 'encode_prompt_sdxl.pooled_prompt_embeds', e.pooled);
    });
  } finally {
    te1.dispose();
    te2.dispose();
  }
  return out;
}
