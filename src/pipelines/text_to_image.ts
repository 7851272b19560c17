// Text-to-image sampling as diffusers 0.20's StableDiffusionPipeline and StableDiffusionXLPipeline
// run it: prompt encoding (SDXL: both encoders, penultimate states, pooled text_embeds, zero
// negatives when no negative prompt is given and force_zeros_for_empty_prompt is set), classifier-
// free guidance on an [uncond, cond] batch (with optional guidance rescale), the scheduler loop,
// and VAE decoding to images in [0, 1].
import * as torch from '../torch/index.js';
import { encodeSdxlPrompt, type PipelineComponents } from '../models/index.js';
import type { Scheduler } from '../schedulers/samplers.js';
import type { CLIPTokenizer } from '../tokenizers/clip.js';

export interface GenerateOptions {
  prompts: string[];
  negativePrompts?: string[] | null;
  /**
   * diffusers' prompt_embeds / negative_prompt_embeds (and the pooled pair for SDXL): encoded text
   * used instead of running the text encoders; `prompts` then only gives the batch size. The
   * negatives are required when guidance is on.
   */
  embeds?: {
    prompt: torch.Tensor;
    negative: torch.Tensor | null;
    pooled?: torch.Tensor;
    negativePooled?: torch.Tensor | null;
  };
  numInferenceSteps: number;
  guidanceScale: number;
  /** diffusers' guidance_rescale (Lin et al. 2023 §3.4); 0 disables it. */
  guidanceRescale?: number;
  height: number;
  width: number;
  /** Initial latents [B, 4, H/8, W/8] (unscaled), or drawn from `generator` like diffusers' randn_tensor. */
  latents?: torch.Tensor;
  generator?: torch.Generator;
  eta?: number;
  /** Called after every scheduler step with the loop index and the latents. */
  onStep?: (i: number, t: number, latents: torch.Tensor) => void;
}

export interface SamplerModels {
  pipeline: PipelineComponents;
  tokenizer: CLIPTokenizer | null;
  tokenizer2: CLIPTokenizer | null;
  scheduler: Scheduler;
}

export interface GenerateResult {
  /** [B, H, W, 3] float in [0, 1] */
  images: torch.Tensor;
  latents: torch.Tensor;
  promptEmbeds: torch.Tensor;
  negativePromptEmbeds: torch.Tensor;
  pooledPromptEmbeds: torch.Tensor | null;
  negativePooledPromptEmbeds: torch.Tensor | null;
}

function ids(tok: CLIPTokenizer, texts: string[], device: torch.Device): torch.Tensor {
  return torch.tensor(tok.encodeBatch(texts).map((e) => e.inputIds), { dtype: 'int64', device });
}

function encodeSd(m: SamplerModels, texts: string[], device: torch.Device): torch.Tensor {
  return m.pipeline.textEncoder!.forward(ids(m.tokenizer!, texts, device)).lastHiddenState;
}

function encodeSdxl(m: SamplerModels, texts: string[]): { embeds: torch.Tensor; pooled: torch.Tensor } {
  const e = encodeSdxlPrompt({ textEncoder: m.pipeline.textEncoder, tokenizer: m.tokenizer, textEncoder2: m.pipeline.textEncoder2, tokenizer2: m.tokenizer2 }, texts);
  return { embeds: e.promptEmbeds, pooled: e.pooled };
}

/** rescale_noise_cfg: match the guided prediction's std to the text-conditioned one's. */
function rescaleNoiseCfg(cfg: torch.Tensor, text: torch.Tensor, phi: number): torch.Tensor {
  const dims = Array.from({ length: text.ndim - 1 }, (_, i) => i + 1);
  const stdText = text.std(dims, { keepdim: true });
  const stdCfg = cfg.std(dims, { keepdim: true });
  const rescaled = cfg.mul(stdText.div(stdCfg));
  return rescaled.mul(phi).add(cfg.mul(1 - phi));
}

/** generate()'s images as 8-bit RGB bytes, row-major HWC (numpy_to_pil's (x * 255).round().astype(uint8)). */
export function imagesToBytes(images: torch.Tensor): Uint8Array {
  return torch.tidy(() => new Uint8Array(images.mul(255).round().clamp(0, 255).to('uint8').toTypedArray() as Uint8Array));
}

/** diffusers' vae_scale_factor: 2 ** (len(vae.block_out_channels) - 1), 8 for every real SD/SDXL VAE. */
export function vaeScaleFactor(p: { vae: { config: { blockOutChannels: number[] } } }): number {
  return 2 ** (p.vae.config.blockOutChannels.length - 1);
}

export function generate(m: SamplerModels, o: GenerateOptions): GenerateResult {
  return torch.tidy(() => torch.noGrad(() => {
    const p = m.pipeline;
    const device = p.unet.conv_in.weight.device;
    const b = o.prompts.length;
    const cfg = o.guidanceScale > 1.0;
    const negatives = o.negativePrompts ?? null;
    if (negatives && negatives.length !== b) throw new RangeError(`${negatives.length} negative prompts for ${b} prompts`);
    // 1. prompts
    let promptEmbeds: torch.Tensor;
    let negativeEmbeds: torch.Tensor;
    let pooled: torch.Tensor | null = null;
    let negativePooled: torch.Tensor | null = null;
    if (o.embeds) {
      const e = o.embeds;
      if (e.prompt.shape[0] !== b) throw new RangeError(`embeds.prompt has batch ${e.prompt.shape[0]}, expected ${b}`);
      if (cfg && !e.negative) throw new Error('embeds.negative is required when guidance_scale > 1');
      if (p.kind === 'sdxl' && (!e.pooled || (cfg && !e.negativePooled))) throw new Error('SDXL embeds need pooled (and negativePooled with guidance)');
      promptEmbeds = e.prompt.to(device);
      negativeEmbeds = (e.negative ?? e.prompt).to(device);
      if (p.kind === 'sdxl') {
        pooled = e.pooled!.to(device);
        negativePooled = (e.negativePooled ?? e.pooled!).to(device);
      }
    } else if (p.kind === 'sd') {
      promptEmbeds = encodeSd(m, o.prompts, device);
      negativeEmbeds = encodeSd(m, negatives ?? o.prompts.map(() => ''), device);
    } else {
      const pos = encodeSdxl(m, o.prompts);
      promptEmbeds = pos.embeds;
      pooled = pos.pooled;
      const zeroNegatives = !negatives && p.index.force_zeros_for_empty_prompt === true;
      if (zeroNegatives) {
        negativeEmbeds = torch.zerosLike(promptEmbeds);
        negativePooled = torch.zerosLike(pooled);
      } else {
        const neg = encodeSdxl(m, negatives ?? o.prompts.map(() => ''));
        negativeEmbeds = neg.embeds;
        negativePooled = neg.pooled;
      }
    }
    const unetDtype = p.unet.dtype;
    const context = (cfg ? torch.cat([negativeEmbeds, promptEmbeds]) : promptEmbeds).to(unetDtype);
    let addedCond: { textEmbeds: torch.Tensor; timeIds: torch.Tensor } | undefined;
    if (p.kind === 'sdxl') {
      // original size + crop top-left + target size
      const timeIds = torch.tensor([o.height, o.width, 0, 0, o.height, o.width], { dtype: promptEmbeds.dtype, device }).unsqueeze(0).repeat(b, 1);
      addedCond = {
        textEmbeds: (cfg ? torch.cat([negativePooled!, pooled!]) : pooled!).to(unetDtype),
        timeIds: (cfg ? torch.cat([timeIds, timeIds]) : timeIds).to(unetDtype),
      };
    }
    // 2. timesteps and initial latents
    const s = m.scheduler;
    s.setTimesteps(o.numInferenceSteps);
    const f = vaeScaleFactor(p);
    const shape = [b, p.unet.config.inChannels, Math.floor(o.height / f), Math.floor(o.width / f)];
    const init = o.latents ?? torch.randn(shape, { generator: o.generator, dtype: 'float32', device: o.generator?.device ?? 'cpu' });
    let latents = init.to({ device, dtype: unetDtype }).mul(s.initNoiseSigma);
    // 3. denoising loop; the timesteps go to the device in one copy (a number per step would be a
    // blocking host-to-device copy each time)
    const onDevice = torch.tensor(s.timesteps, { dtype: s.timesteps.every(Number.isInteger) ? 'int64' : 'float32', device });
    s.timesteps.forEach((t, i) => {
      const next = torch.tidy(() => {
        const input = s.scaleModelInput(cfg ? torch.cat([latents, latents]) : latents, t);
        let noise = p.unet.forward(input, onDevice.select(0, i), context, { addedCond }).sample;
        if (cfg) {
          const [uncond, text] = noise.chunk(2);
          noise = uncond!.add(text!.sub(uncond!).mul(o.guidanceScale));
          if (o.guidanceRescale) noise = rescaleNoiseCfg(noise, text!, o.guidanceRescale);
        }
        return s.step(noise, t, latents, { generator: o.generator, eta: o.eta }).prevSample;
      });
      latents = next;
      o.onStep?.(i, t, latents);
    });
    s.dispose();
    // 4. decode: (x / 2 + 0.5).clamp(0, 1), NHWC
    const vaeDtype = p.vae.config.forceUpcast && p.vae.quant_conv.weight.dtype === 'float16' ? 'float32' : p.vae.quant_conv.weight.dtype;
    if (vaeDtype !== p.vae.quant_conv.weight.dtype) p.vae.to('float32');
    const decoded = p.vae.decode(latents.to(vaeDtype).div(p.vae.config.scalingFactor));
    const images = decoded.div(2).add(0.5).clamp(0, 1).permute(0, 2, 3, 1).float().contiguous();
    return { images, latents, promptEmbeds, negativePromptEmbeds: negativeEmbeds, pooledPromptEmbeds: pooled, negativePooledPromptEmbeds: negativePooled };
  }));
}
