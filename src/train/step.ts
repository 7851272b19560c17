// One Diffusion-DPO (or SFT) forward pass, as train.py's `with accelerator.accumulate(unet)` body
// computes it, up to the loss (the caller runs backward and the optimizer):
//   1. preferred / dispreferred images stacked on the batch axis: [w_1..w_B, l_1..l_B]
//   2. VAE latents (posterior sample) x scaling_factor, frozen, no grad
//   3. noise ~ N(0, I) (+ noise offset), timesteps ~ U[0, T) (refiner: t % 200; turbo: 250 (t % 4) + 249),
//      the same noise and timestep for both images of a pair
//   4. x_t = add_noise(latents, noise (+ input perturbation), t)
//   5. conditioning: SD, the text encoder's last hidden state; SDXL, both encoders' penultimate
//      states side by side, the second encoder's pooled text_embeds and the size/crop time ids
//   6-9. the trained UNet's prediction, the frozen reference's under no-grad, and the loss
// The random draws happen in the reference's order (posterior sample, noise, [offset], [perturbation],
// timesteps) from the default generator, so a seeded step reproduces train.py's numbers.
import * as torch from '../torch/index.js';
import { encodeSdxlPrompt, type AutoencoderKL, type CLIPTextModel, type CLIPTextModelWithProjection, type UNet2DConditionModel } from '../models/index.js';
import type { NoiseSchedule } from '../schedulers/noise_schedule.js';
import type { CLIPTokenizer } from '../tokenizers/clip.js';
import { dpoLoss, sftLoss, type DpoLossOutput } from './dpo_loss.js';

export type TimestepMode = 'default' | 'refiner' | 'turbo';

export interface DiffusionModels {
  kind: 'sd' | 'sdxl';
  unet: UNet2DConditionModel;
  /** The frozen reference (DPO only). */
  refUnet: UNet2DConditionModel | null;
  vae: AutoencoderKL;
  /** SD: the text encoder; SDXL base: the first encoder (null for the refiner, which has only the second). */
  textEncoder: CLIPTextModel | null;
  textEncoder2: CLIPTextModelWithProjection | null;
  /** SDXL tokenizes captions in the step (train.py passes raw captions). */
  tokenizer: CLIPTokenizer | null;
  tokenizer2: CLIPTokenizer | null;
  noise: NoiseSchedule;
}

export interface StepConfig {
  method: 'dpo' | 'sft';
  betaDpo: number;
  noiseOffset: number;
  inputPerturbation: number;
  timestepMode: TimestepMode;
  /** SDXL time ids use it: [res, res, 0, 0, res, res] (refiner: [res, res, 0, 0, 6]). */
  resolution: number;
  /** dtype the frozen models run in (mixed precision casts them). */
  weightDtype: torch.DType;
}

export interface StepBatch {
  /** [B, 6, H, W] (DPO) or [B, 3, H, W] (SFT) in [-1, 1]. */
  pixelValues: torch.Tensor;
  /** SD: [B, 77] token ids. */
  inputIds?: torch.Tensor;
  /** SD: precomputed text-encoder states [B, 77, D] (cached embeddings), used instead of inputIds. */
  encoderHiddenStates?: torch.Tensor;
  /** SDXL: the captions. */
  captions?: string[];
}

export interface StepOutput {
  loss: torch.Tensor;
  dpo: DpoLossOutput | null;
  /** Everything in between, for parity checks and logs. */
  latents: torch.Tensor;
  noise: torch.Tensor;
  timesteps: torch.Tensor;
  noisyLatents: torch.Tensor;
  encoderHiddenStates: torch.Tensor;
  pooledPromptEmbeds: torch.Tensor | null;
  addTimeIds: torch.Tensor | null;
  modelPred: torch.Tensor;
  refPred: torch.Tensor | null;
}

function encoderDevice(m: torch.nn.Module): torch.Device {
  return m.parameters()[0]!.device;
}

export function diffusionStep(m: DiffusionModels, batch: StepBatch, cfg: StepConfig): StepOutput {
  if (m.noise.config.predictionType !== 'epsilon') {
    throw new Error(`the scheduler's prediction_type is '${m.noise.config.predictionType}': Diffusion-DPO as in the reference trains epsilon-prediction models only`);
  }
  if (cfg.method === 'dpo' && !m.refUnet) throw new Error('DPO needs a reference UNet');
  return torch.tidy(() => {
    const device = encoderDevice(m.unet);
    // 1. preferred and dispreferred on the batch axis
    const pixels = batch.pixelValues.to({ device });
    const feed = cfg.method === 'dpo' ? torch.cat(pixels.chunk(2, 1), 0) : pixels;

    // 2. latents
    const latents = torch.noGrad(() => m.vae.encode(feed.to(cfg.weightDtype)).sample().mul(m.vae.config.scalingFactor));

    // 3. noise and timesteps, drawn in the reference's order
    let noise = torch.randnLike(latents);
    if (cfg.noiseOffset) noise = noise.add(torch.randn([latents.shape[0]!, latents.shape[1]!, 1, 1], { device: latents.device }).mul(cfg.noiseOffset));
    const perturbed = cfg.inputPerturbation ? noise.add(torch.randnLike(noise).mul(cfg.inputPerturbation)) : null;
    const bsz = latents.shape[0]!;
    let timesteps = torch.randint(0, m.noise.config.numTrainTimesteps, [bsz], { device: latents.device });
    if (cfg.timestepMode === 'refiner') timesteps = timesteps.remainder(200);
    else if (cfg.timestepMode === 'turbo') timesteps = timesteps.remainder(4).mul(250).add(249);
    if (cfg.method === 'dpo') {
      // the same timestep and noise for both images of a pair (the perturbed noise is not shared, as in train.py)
      timesteps = timesteps.chunk(2)[0]!.repeat(2);
      noise = noise.chunk(2)[0]!.repeat(2, 1, 1, 1);
    }

    // 4. forward diffusion
    const noisyLatents = m.noise.addNoise(latents, perturbed ?? noise, timesteps);

    // 5. conditioning
    let encoderHiddenStates: torch.Tensor;
    let pooledPromptEmbeds: torch.Tensor | null = null;
    let addTimeIds: torch.Tensor | null = null;
    if (m.kind === 'sdxl') {
      if (!batch.captions) throw new Error('SDXL steps need the captions');
      const res = cfg.resolution;
      const ids = cfg.timestepMode === 'refiner' ? [res, res, 0, 0, 6.0] : [res, res, 0, 0, res, res];
      addTimeIds = torch.tensor(ids, { dtype: cfg.weightDtype, device }).unsqueeze(0).repeat(timesteps.shape[0]!, 1);
      const { promptEmbeds, pooled } = encodeSdxlPrompt(m, batch.captions);
      encoderHiddenStates = cfg.method === 'dpo' ? promptEmbeds.repeat(2, 1, 1) : promptEmbeds;
      pooledPromptEmbeds = cfg.method === 'dpo' ? pooled.repeat(2, 1) : pooled;
    } else {
      let ehs: torch.Tensor;
      if (batch.encoderHiddenStates) ehs = batch.encoderHiddenStates.to({ device });
      else {
        if (!batch.inputIds || !m.textEncoder) throw new Error('SD steps need input ids and a text encoder (or precomputed encoder hidden states)');
        ehs = torch.noGrad(() => m.textEncoder!.forward(batch.inputIds!.to({ device })).lastHiddenState);
      }
      encoderHiddenStates = cfg.method === 'dpo' ? ehs.repeat(2, 1, 1) : ehs;
    }
    const addedCond = m.kind === 'sdxl' ? { textEmbeds: pooledPromptEmbeds!, timeIds: addTimeIds! } : undefined;

    // 6-9. predictions and loss (target = noise: epsilon prediction)
    const target = noise;
    const modelPred = m.unet.forward(noisyLatents, timesteps, encoderHiddenStates, { addedCond }).sample;
    if (cfg.method === 'sft') {
      return { loss: sftLoss(modelPred, target), dpo: null, latents, noise, timesteps, noisyLatents, encoderHiddenStates, pooledPromptEmbeds, addTimeIds, modelPred, refPred: null };
    }
    const refPred = torch.noGrad(() => m.refUnet!.forward(noisyLatents, timesteps, encoderHiddenStates, { addedCond }).sample);
    const dpo = dpoLoss(modelPred, refPred, target, cfg.betaDpo);
    return { loss: dpo.loss, dpo, latents, noise, timesteps, noisyLatents, encoderHiddenStates, pooledPromptEmbeds, addTimeIds, modelPred, refPred };
  });
}
