// Trains the demo's base pipeline from scratch on the shapes domain (shapes.ts), the way Stable
// Diffusion was built, in miniature:
//   1. a CLIP (text and vision towers) learns captions against drawings contrastively; it is kept
//      as the demo's generic scorer (`--scorers clip`) and its text tower becomes the text encoder;
//   2. a VAE learns to reconstruct drawings through 8x8x4 latents; its scaling_factor is set so
//      the latents have unit variance, as SD's 0.18215 does;
//   3. a UNet learns to denoise those latents conditioned on the frozen text encoder's states, with
//      10% of captions dropped so classifier-free guidance works; its EMA weights (diffusers'
//      EMAModel schedule, decay up to 0.999) are kept.
// Everything is seeded; the budgets say how many optimizer steps each stage takes.
import { mkdirSync, rmSync, renameSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { RawImage } from '../data/pil_resize.js';
import { Rng } from '../data/rng.js';
import * as torch from '../torch/index.js';
import { AutoencoderKL, CLIPModel, CLIPTextModel, UNet2DConditionModel, saveComponent, writeFileAtomic } from '../models/index.js';
import { NoiseSchedule, parseNoiseScheduleConfig } from '../schedulers/noise_schedule.js';
import { clipImageProcessorConfig, preprocessBatch } from '../scoring/preprocess.js';
import { CLIPTokenizer } from '../tokenizers/clip.js';
import { allCaptions, COLOUR_NAMES, DEMO_IMAGE_SIZE, randomSpec, renderShape, SHAPE_NAMES } from './shapes.js';
import { writeWordTokenizer } from './word_tokenizer.js';

export interface DemoBaseBudget {
  clipSteps: number;
  vaeSteps: number;
  /** Drawings encoded once for the UNet's training set. */
  unetImages: number;
  unetSteps: number;
}

/** What scripts/make-demo-base.js runs. */
export const FULL_BUDGET: DemoBaseBudget = { clipSteps: 2000, vaeSteps: 1500, unetImages: 12_000, unetSteps: 3400 };

/** Tokens per prompt: "a <colour> <shape>" is 5 with bos and eos. */
export const DEMO_MAX_LENGTH = 16;

const PREPROCESSOR = {
  crop_size: { height: DEMO_IMAGE_SIZE, width: DEMO_IMAGE_SIZE }, do_center_crop: true, do_convert_rgb: true, do_normalize: true, do_rescale: true, do_resize: true,
  image_mean: [0.48145466, 0.4578275, 0.40821073], image_std: [0.26862954, 0.26130258, 0.27577711], image_processor_type: 'CLIPImageProcessor',
  resample: 3, rescale_factor: 1 / 255, size: { shortest_edge: DEMO_IMAGE_SIZE },
};

export const SCHEDULER_CONFIG = {
  _class_name: 'PNDMScheduler', _diffusers_version: '0.20.0', beta_end: 0.012, beta_schedule: 'scaled_linear', beta_start: 0.00085,
  num_train_timesteps: 1000, set_alpha_to_one: false, skip_prk_steps: true, steps_offset: 1, trained_betas: null, clip_sample: false,
};

function clipConfig(vocabSize: number, bos: number, eos: number) {
  return {
    architectures: ['CLIPModel'], model_type: 'clip', projection_dim: 32, logit_scale_init_value: 2.6592,
    text_config: {
      vocab_size: vocabSize, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, max_position_embeddings: DEMO_MAX_LENGTH,
      hidden_act: 'quick_gelu', bos_token_id: bos, eos_token_id: eos, pad_token_id: eos, projection_dim: 32, model_type: 'clip_text_model',
    },
    vision_config: {
      image_size: DEMO_IMAGE_SIZE, patch_size: 4, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, hidden_act: 'quick_gelu',
      projection_dim: 32, model_type: 'clip_vision_model',
    },
  };
}

/** The VAE halves the side twice: 32 px drawings are 8x8x4 latents. */
const LATENT_SIZE = DEMO_IMAGE_SIZE / 4;

const VAE_CONFIG = {
  block_out_channels: [16, 32, 64], layers_per_block: 1, latent_channels: 4, sample_size: DEMO_IMAGE_SIZE, in_channels: 3, out_channels: 3, norm_num_groups: 16,
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'], up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'], act_fn: 'silu',
};

const UNET_CONFIG = {
  sample_size: LATENT_SIZE, in_channels: 4, out_channels: 4, block_out_channels: [48, 96], layers_per_block: 1, attention_head_dim: 4,
  cross_attention_dim: 64, norm_num_groups: 16, down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'],
};

/** Drawings as [B, 3, H, W] float32 in [-1, 1] (what the VAE takes). */
export function drawingsToTensor(images: readonly RawImage[]): torch.Tensor {
  const s = DEMO_IMAGE_SIZE;
  const plane = s * s;
  const buf = new Float32Array(images.length * 3 * plane);
  images.forEach((img, i) => {
    for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) buf[(i * 3 + c) * plane + p] = img.data[p * 3 + c]! / 127.5 - 1;
  });
  return torch.fromTypedArray(buf, [images.length, 3, s, s]);
}

/** A batch of random drawings with the index of each one's caption in allCaptions(). */
function randomDrawings(rng: Rng, n: number): { images: RawImage[]; captions: number[] } {
  const images: RawImage[] = [];
  const captions: number[] = [];
  for (let i = 0; i < n; i++) {
    const ci = rng.int(COLOUR_NAMES.length);
    const si = rng.int(SHAPE_NAMES.length);
    images.push(renderShape(randomSpec(rng, COLOUR_NAMES[ci]!, SHAPE_NAMES[si]!)));
    captions.push(ci * SHAPE_NAMES.length + si);
  }
  return { images, captions };
}

type Log = (line: string) => void;

/** Runs `steps` optimizer steps of `loss`, logging the mean loss every `every` steps. */
function fit(name: string, params: torch.Tensor[], steps: number, lr: number, loss: (step: number) => torch.Tensor, log: Log, after?: (step: number) => void): number {
  const opt = new torch.optim.AdamW(params, { lr, weightDecay: 0.01 });
  const warmup = Math.min(100, Math.floor(steps / 10));
  const every = Math.max(1, Math.floor(steps / 10));
  let sum = 0;
  let last = NaN;
  const t0 = performance.now();
  for (let step = 0; step < steps; step++) {
    // linear warm-up, then cosine decay to a tenth
    const progress = Math.max(0, step - warmup) / Math.max(1, steps - warmup);
    opt.paramGroups[0]!.hyper.lr = step < warmup ? lr * (step + 1) / warmup : lr * (0.1 + 0.45 * (1 + Math.cos(Math.PI * progress)));
    const value = torch.tidy(() => {
      const l = loss(step);
      l.backward();
      torch.optim.clipGradNorm_(params, 1.0);
      opt.step();
      opt.zeroGrad();
      return l.item();
    });
    after?.(step);
    sum += value;
    if ((step + 1) % every === 0 || step + 1 === steps) {
      last = sum / (((step) % every) + 1);
      log(`[${name}] step ${step + 1}/${steps} loss ${last.toFixed(4)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
      sum = 0;
    }
  }
  opt.dispose();
  return last;
}

/** Contrastive CLIP loss where every drawing of the same caption is a positive (soft targets). */
function contrastiveLoss(model: CLIPModel, pixels: torch.Tensor, ids: torch.Tensor, captions: number[]): torch.Tensor {
  const image = torch.F.normalize(model.imageFeatures(pixels), 2, -1);
  const text = torch.F.normalize(model.textFeatures(ids), 2, -1);
  const logits = image.matmul(text.transpose(0, 1)).mul(model.logit_scale.clamp(0, Math.log(100)).exp());
  const n = captions.length;
  const same = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) same[i * n + j] = +(captions[i] === captions[j]);
  const targets = torch.fromTypedArray(same, [n, n]);
  const rows = targets.div(targets.sum(1, true));
  const imageToText = torch.F.logSoftmax(logits, 1).mul(rows).sum(1).mean().neg();
  const textToImage = torch.F.logSoftmax(logits.transpose(0, 1), 1).mul(rows).sum(1).mean().neg();
  return imageToText.add(textToImage).div(2);
}

export interface DemoBaseResult {
  seconds: Record<'clip' | 'vae' | 'unet' | 'total', number>;
  finalLoss: Record<'clip' | 'vae' | 'unet', number>;
  scalingFactor: number;
}

/**
 * Trains and writes <out>/pipeline (a diffusers StableDiffusionPipeline folder) and <out>/clip (a
 * transformers CLIPModel folder with its tokenizer and image-processor config). Weights are stored
 * in float16 to keep the committed fixture small; they load into float32 models.
 */
export function makeDemoBase(out: string, o: { seed?: number; budget?: DemoBaseBudget; log?: Log } = {}): DemoBaseResult {
  const seed = o.seed ?? 0;
  const budget = o.budget ?? FULL_BUDGET;
  const log = o.log ?? ((l: string) => console.error(l));
  const tStart = performance.now();
  const staging = `${out}.partial`;
  rmSync(staging, { recursive: true, force: true });
  const pipelineDir = join(staging, 'pipeline');
  const clipDir = join(staging, 'clip');
  torch.manualSeed(seed);
  const rng = new Rng(seed);
  const domain = allCaptions();
  const captions = domain.map((c) => c.caption);
  const words = [...new Set(captions.flatMap((c) => c.split(' ')))];
  const { vocabSize, bos, eos } = writeWordTokenizer(clipDir, words, DEMO_MAX_LENGTH);
  writeWordTokenizer(join(pipelineDir, 'tokenizer'), words, DEMO_MAX_LENGTH);
  writeFileAtomic(join(clipDir, 'preprocessor_config.json'), JSON.stringify(PREPROCESSOR, null, 2));
  const tokenizer = CLIPTokenizer.fromFolder(clipDir);
  const ids = (texts: string[]) => torch.tensor(texts.map((t) => tokenizer.encode(t).inputIds), { dtype: 'int64' });
  const preprocess = clipImageProcessorConfig(PREPROCESSOR);

  // 1. CLIP: each step shows every caption twice, drawn anew
  let t0 = performance.now();
  const clip = new CLIPModel(clipConfig(vocabSize, bos, eos));
  const captionIds = ids(captions).keep();
  const clipLoss = fit('clip', clip.parameters(), budget.clipSteps, 1e-3, () => {
    const order = [...captions.keys(), ...captions.keys()];
    const images = order.map((k) => renderShape(randomSpec(rng, domain[k]!.colour, domain[k]!.shape)));
    const pixels = preprocessBatch(images, preprocess);
    return contrastiveLoss(clip, pixels, captionIds.indexSelect(0, torch.tensor(order, { dtype: 'int64' })), order);
  }, log);
  const clipSeconds = (performance.now() - t0) / 1000;
  saveHalf(clipDir, clip, 'CLIPModel', 'transformers');
  // the text tower, under CLIPTextModel's names, is the pipeline's text encoder
  const textEncoder = new CLIPTextModel(clipConfig(vocabSize, bos, eos).text_config);
  textEncoder.loadStateDict(new Map([...clip.stateDict()].filter(([k]) => k.startsWith('text_model.'))));
  textEncoder.requiresGrad_(false).eval();
  clip.dispose();

  // 2. VAE: reconstruction plus a light KL pull towards N(0, I)
  t0 = performance.now();
  const vae = new AutoencoderKL(VAE_CONFIG);
  const vaeLoss = fit('vae', vae.parameters(), budget.vaeSteps, 1e-3, () => {
    const x = drawingsToTensor(randomDrawings(rng, 32).images);
    const posterior = vae.encode(x);
    const recon = vae.decode(posterior.sample());
    const kl = posterior.mean.pow(2).add(posterior.var).sub(1).sub(posterior.logvar).mul(0.5).mean();
    return torch.F.mseLoss(recon, x).add(kl.mul(1e-4));
  }, log);
  vae.requiresGrad_(false).eval();

  // the UNet's training set: drawings encoded once (posterior mean and std), with their captions
  const set = randomDrawings(rng, budget.unetImages);
  const moments = torch.noGrad(() => {
    const parts: torch.Tensor[] = [];
    for (let i = 0; i < set.images.length; i += 256) parts.push(torch.tidy(() => vae.encode(drawingsToTensor(set.images.slice(i, i + 256))).parameters.keep()));
    const all = torch.cat(parts, 0).keep();
    parts.forEach((p) => p.dispose());
    return all;
  });
  const [latentMean, latentLogvar] = moments.chunk(2, 1) as [torch.Tensor, torch.Tensor];
  const latentStd = torch.tidy(() => latentLogvar.clamp(-30, 20).mul(0.5).exp()).keep();
  const scalingFactor = torch.tidy(() => 1 / latentMean.std().item());
  const vaeSeconds = (performance.now() - t0) / 1000;
  saveHalf(join(pipelineDir, 'vae'), vae, 'AutoencoderKL', 'diffusers', { scaling_factor: scalingFactor });
  log(`[vae] scaling_factor ${scalingFactor.toFixed(4)}`);
  vae.dispose();

  // 3. UNet on the frozen text encoder's states (19 distinct prompts: the captions and "")
  t0 = performance.now();
  const states = torch.noGrad(() => textEncoder.forward(ids([...captions, ''])).lastHiddenState.keep());
  const unet = new UNet2DConditionModel(UNET_CONFIG);
  const ema = new UNet2DConditionModel(UNET_CONFIG);
  ema.loadStateDict(unet.stateDict());
  ema.requiresGrad_(false);
  const noise = new NoiseSchedule(parseNoiseScheduleConfig(SCHEDULER_CONFIG));
  const batch = 64;
  const unetParams = unet.parameters();
  const emaParams = ema.parameters();
  const unetLoss = fit('unet', unetParams, budget.unetSteps, 1e-3, () => {
    const rows = Array.from({ length: batch }, () => rng.int(set.images.length));
    const index = torch.tensor(rows, { dtype: 'int64' });
    const z0 = latentMean.indexSelect(0, index).add(latentStd.indexSelect(0, index).mul(torch.randn([batch, 4, LATENT_SIZE, LATENT_SIZE]))).mul(scalingFactor);
    const eps = torch.randn(z0.shape);
    const t = torch.randint(0, noise.config.numTrainTimesteps, [batch], { dtype: 'int64' });
    const cond = rows.map((r) => (rng.next() < 0.1 ? captions.length : set.captions[r]!));
    const ehs = states.indexSelect(0, torch.tensor(cond, { dtype: 'int64' }));
    const pred = unet.forward(noise.addNoise(z0, eps, t), t, ehs).sample;
    return torch.F.mseLoss(pred, eps);
  }, log, (step) => {
    // diffusers' EMAModel decay: (1 + s) / (10 + s), at most 0.999, so the random start fades out
    const decay = Math.min(0.999, (1 + step) / (10 + step));
    torch.noGrad(() => emaParams.forEach((e, i) => e.lerp_(unetParams[i]!, 1 - decay)));
  });
  const unetSeconds = (performance.now() - t0) / 1000;
  saveHalf(join(pipelineDir, 'unet'), ema, 'UNet2DConditionModel');
  saveHalf(join(pipelineDir, 'text_encoder'), textEncoder, 'CLIPTextModel', 'transformers');
  mkdirSync(join(pipelineDir, 'scheduler'), { recursive: true });
  writeFileAtomic(join(pipelineDir, 'scheduler', 'scheduler_config.json'), JSON.stringify(SCHEDULER_CONFIG, null, 2));
  writeFileAtomic(join(pipelineDir, 'model_index.json'), JSON.stringify({
    _class_name: 'StableDiffusionPipeline', _diffusers_version: '0.20.0', feature_extractor: [null, null], requires_safety_checker: false,
    safety_checker: [null, null], scheduler: ['diffusers', 'PNDMScheduler'], text_encoder: ['transformers', 'CLIPTextModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'], unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'],
  }, null, 2));
  for (const t of [captionIds, moments, latentMean, latentLogvar, latentStd, states]) t.dispose();
  unet.dispose();
  ema.dispose();
  textEncoder.dispose();
  noise.dispose();

  rmSync(out, { recursive: true, force: true });
  if (existsSync(out)) throw new Error(`could not replace ${out}`);
  renameSync(staging, out);
  const total = (performance.now() - tStart) / 1000;
  return {
    seconds: { clip: clipSeconds, vae: vaeSeconds, unet: unetSeconds, total },
    finalLoss: { clip: clipLoss, vae: vaeLoss, unet: unetLoss },
    scalingFactor,
  };
}

/** saveComponent with float16 weights (and extra config keys). */
function saveHalf(folder: string, model: torch.nn.Module & { config: { raw: Record<string, unknown> } }, className: string, library: 'diffusers' | 'transformers' = 'diffusers', extra: Record<string, unknown> = {}): void {
  const own = model.stateDict();
  const half = new Map([...own].map(([k, v]) => [k, v.isFloatingPoint() ? v.to({ dtype: 'float16' }) : v]));
  const view = { stateDict: () => half, config: { raw: { ...model.config.raw, ...extra, ...(library === 'transformers' ? { torch_dtype: 'float16' } : {}) } } } as unknown as torch.nn.Module & { config: { raw: Record<string, unknown> } };
  saveComponent(folder, view, className, { library });
  for (const [k, v] of half) if (v !== own.get(k)) v.dispose();
}
