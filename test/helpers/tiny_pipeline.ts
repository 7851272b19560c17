// Tiny random models and data for tests, generated (nothing is downloaded or shipped):
//  - a tiny Stable Diffusion pipeline in diffusers layout with random weights (about 7 MB): a
//    2-level UNet, a 2-level VAE, a 2-layer CLIP text encoder and a byte-level CLIP tokenizer;
//  - a preference set where the preference is learnable: in every pair the warmer-coloured image
//    (more red than blue) is preferred; half the pairs store it second (label_0 = 0).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import * as torch from '../../src/torch/index.js';
import { AutoencoderKL, CLIPTextModel, UNet2DConditionModel, saveComponent, writeFileAtomic } from '../../src/models/index.js';
import { Rng } from '../../src/data/rng.js';
import { bytesToUnicode } from '../../src/tokenizers/clip.js';

export function writeTinyPipeline(folder: string, seed = 0): void {
  torch.manualSeed(seed);
  // byte-level vocabulary without merges: every character is a token (with and without </w>)
  const chars = bytesToUnicode();
  const vocab: Record<string, number> = {};
  chars.forEach((c, i) => { vocab[c] = i; vocab[`${c}</w>`] = 256 + i; });
  vocab['<|startoftext|>'] = 512;
  vocab['<|endoftext|>'] = 513;
  const tok = join(folder, 'tokenizer');
  mkdirSync(tok, { recursive: true });
  writeFileAtomic(join(tok, 'vocab.json'), JSON.stringify(vocab));
  writeFileAtomic(join(tok, 'merges.txt'), '#version: 0.2\n');
  const special = { bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', pad_token: '<|endoftext|>' };
  writeFileAtomic(join(tok, 'special_tokens_map.json'), JSON.stringify(special));
  writeFileAtomic(join(tok, 'tokenizer_config.json'), JSON.stringify({ ...special, model_max_length: 77, tokenizer_class: 'CLIPTokenizer', do_lower_case: true }));

  const text = new CLIPTextModel({ vocab_size: 514, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, max_position_embeddings: 77, hidden_act: 'quick_gelu', projection_dim: 32 });
  const unet = new UNet2DConditionModel({
    sample_size: 16, block_out_channels: [32, 64], layers_per_block: 1, attention_head_dim: 4, cross_attention_dim: 32,
    down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'],
  });
  const vae = new AutoencoderKL({
    block_out_channels: [32, 64], layers_per_block: 1, latent_channels: 4, sample_size: 32,
    down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D'], up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D'],
  });
  saveComponent(join(folder, 'text_encoder'), text, 'CLIPTextModel', { library: 'transformers' });
  saveComponent(join(folder, 'unet'), unet, 'UNet2DConditionModel');
  saveComponent(join(folder, 'vae'), vae, 'AutoencoderKL');
  mkdirSync(join(folder, 'scheduler'), { recursive: true });
  writeFileAtomic(join(folder, 'scheduler', 'scheduler_config.json'), JSON.stringify({
    _class_name: 'PNDMScheduler', _diffusers_version: '0.20.0', beta_end: 0.012, beta_schedule: 'scaled_linear', beta_start: 0.00085,
    num_train_timesteps: 1000, set_alpha_to_one: false, skip_prk_steps: true, steps_offset: 1, trained_betas: null, clip_sample: false,
  }, null, 2));
  writeFileAtomic(join(folder, 'model_index.json'), JSON.stringify({
    _class_name: 'StableDiffusionPipeline', _diffusers_version: '0.20.0', feature_extractor: [null, null], requires_safety_checker: false,
    safety_checker: [null, null], scheduler: ['diffusers', 'PNDMScheduler'], text_encoder: ['transformers', 'CLIPTextModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'], unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'],
  }, null, 2));
  text.dispose();
  unet.dispose();
  vae.dispose();
}

const OBJECTS = ['cat', 'house', 'tree', 'car', 'flower', 'mountain', 'boat', 'dog', 'bird', 'lamp', 'chair', 'cup'];

/** `pairs` preference pairs of `size`-px PNGs; the warmer image wins. Returns the JSONL path. */
export async function writeWarmPreferenceSet(folder: string, pairs: number, size = 32, seed = 0): Promise<string> {
  const rng = new Rng(seed);
  mkdirSync(join(folder, 'images'), { recursive: true });
  const image = async (name: string, warm: boolean) => {
    const base = [rng.int(120) + 60, rng.int(120) + 60, rng.int(120) + 60];
    const shift = 50 + rng.int(40);
    const tint = warm ? [shift, 0, -shift] : [-shift, 0, shift];
    const data = Buffer.alloc(size * size * 3);
    for (let i = 0; i < size * size; i++) {
      const shade = ((i % size) + Math.floor(i / size)) % 16;
      for (let c = 0; c < 3; c++) data[i * 3 + c] = Math.max(0, Math.min(255, base[c]! + tint[c]! + shade + rng.int(12)));
    }
    await sharp(data, { raw: { width: size, height: size, channels: 3 } }).png().toFile(join(folder, 'images', name));
    return `images/${name}`;
  };
  const lines: string[] = [];
  for (let i = 0; i < pairs; i++) {
    const warmFirst = rng.next() < 0.5;
    const a = await image(`${i}_0.png`, warmFirst);
    const b = await image(`${i}_1.png`, !warmFirst);
    lines.push(JSON.stringify({ caption: `a photo of a ${OBJECTS[rng.int(OBJECTS.length)]}`, image_0: a, image_1: b, label_0: warmFirst ? 1 : 0 }));
  }
  const path = join(folder, 'pairs.jsonl');
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}
