// One Diffusion-DPO (or SFT) forward pass, as train.py's `with accelerator.accumulate(unet)` body
// computes it, up to the loss (the update function runs backward and the optimizer):
//   1. preferred / dispreferred images stacked on the batch axis: [w_1..w_B, l_1..l_B]
//   2. VAE latents (posterior sample) x scaling_factor, frozen, no grad; from a latent cache the
//      posterior's parameters come with the batch and only the sample is drawn here
//   3. noise ~ N(0, I) (+ noise offset), timesteps ~ U[0, T) (refiner: t % 200; turbo: 250 (t % 4) + 249),
//      the same noise and timestep for both images of a pair
//   4. x_t = add_noise(latents, noise (+ input perturbation), t)
//   5. conditioning: SD, the text encoder's last hidden state; SDXL, both encoders' penultimate
//      states side by side, the second encoder's pooled text_embeds and the size/crop time ids
//   6-9. the trained UNet's prediction, the frozen reference's under no-grad, and the loss
// The random draws happen in the reference's order (posterior sample, noise, [offset], [perturbation],
// timesteps) from the default generators, so a seeded step reproduces train.py's numbers.
//
// Mixed precision as accelerate does it: only the trained UNet's forward runs under autocast, and
// its output is cast to float32; the frozen models run in their weight dtype without autocast.
//
// SD vs SDXL conditioning and the timestep mode are settled once, when the step is made
// (createDiffusionStep), not inside every call.
import * as torch from '../torch/index.js';
import { DiagonalGaussianDistribution, encodeSdxlPrompt, type AddedCond, type AutoencoderKL, type CLIPTextModel, type CLIPTextModelWithProjection, type UNet2DConditionModel } from '../models/index.js';
import type { NoiseSchedule } from '../schedulers/noise_schedule.js';
import type { CLIPTokenizer } from '../tokenizers/clip.js';
import { sftLoss, type DpoLossOutput } from './dpo_loss.js';
import { needsReference, pairLoss, type PairLossOutput, type PairLossType } from './objectives.js';
import { residentPlacement, type FrozenPlacement } from './placement.js';
import { UserError } from '../util/errors.js';
import { perSampleDraws, type StepDraws } from './draws.js';
import { ddimInvert, type EpsilonPredictor } from '../schedulers/ddim_inversion.js';

export type TimestepMode = 'default' | 'refiner' | 'turbo';

export type NoisingConfig = { kind: 'forward' } | { kind: 'ddim_inversion'; steps: number; eta: number; model: 'reference' | 'trained' };

export interface DiffusionModels {
  kind: 'sd' | 'sdxl';
  unet: UNet2DConditionModel;
  /** The frozen reference (DPO only; null with LoRA, whose reference is `unet` with its adapters off). */
  refUnet: UNet2DConditionModel | null;
  /** LoRA training: the trained adapters on `unet`; switched off, they give the reference prediction. */
  adapters?: torch.nn.LoraAdapters | null;
  /** null when the step is fed latents instead of pixels. */
  vae: AutoencoderKL | null;
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
  /** The pairwise objective (objectives.ts); default sigmoid, Diffusion-DPO's. */
  lossType?: PairLossType;
  /** MaPO's β and c (its snr_value). */
  betaMapo?: number;
  mapoSnrValue?: number;
  /**
   * How x_t is reached: forward diffusion with fresh noise (train.py), or DDIM inversion of x₀
   * (InPO) in `steps` model calls by the reference model (or the trained one), no grad.
   */
  noising?: NoisingConfig;
  /** KTO's weights of desirable and undesirable images (λ_D, λ_U). */
  ktoLambdaDesirable?: number;
  ktoLambdaUndesirable?: number;
  noiseOffset: number;
  inputPerturbation: number;
  timestepMode: TimestepMode;
  /** SDXL time ids use it: [res, res, 0, 0, res, res] (refiner: [res, res, 0, 0, 6]). */
  resolution: number;
  /** dtype the frozen models run in (mixed precision casts them). */
  weightDtype: torch.DType;
  /** The trained UNet's forward runs under this autocast (mixed precision), its output cast to float32. */
  autocast?: torch.AutocastOptions | null;
  /** Where the frozen models live between their calls (default: resident on the device). */
  placement?: FrozenPlacement;
  /** The VAE's scaling_factor, for a step without a VAE fed cached posterior parameters. */
  latentScalingFactor?: number;
  /**
   * The memory format the VAE gives its posterior parameters (cached ones are stored in logical
   * order): the noise is drawn in the latents' memory order, as randn_like does in the reference.
   */
  latentMomentsFormat?: { single: torch.MemoryFormat; batched: torch.MemoryFormat };
}

export interface StepBatch {
  /** [B, 6, H, W] (DPO) or [B, 3, H, W] (SFT) in [-1, 1]. */
  pixelValues?: torch.Tensor;
  /**
   * Instead of pixels (a latent cache): the VAE posterior's parameters of each image, [B, 2 x 2C, h, w]
   * (DPO, preferred then dispreferred on the channel axis, as the pixels) or [B, 2C, h, w] (SFT), in
   * the weight dtype. The step draws the latent sample from them as it would from the VAE's output.
   */
  latentMoments?: torch.Tensor;
  /** SD: [B, 77] token ids. */
  inputIds?: torch.Tensor;
  /**
   * Precomputed text conditioning (cached embeddings), used instead of inputIds or captions: SD, the
   * text encoder's states [B, 77, D]; SDXL, both encoders' penultimate states side by side, with
   * pooledPromptEmbeds.
   */
  encoderHiddenStates?: torch.Tensor;
  /** SDXL: precomputed pooled text embeds [B, D2], with encoderHiddenStates. */
  pooledPromptEmbeds?: torch.Tensor;
  /** SDXL: the captions. */
  captions?: string[];
  /** --sample_seeds: one generator seed per sample (draws.ts); absent: the default generator's draws. */
  sampleSeeds?: readonly bigint[];
  /** KTO on labelled single images: each image's label (1 desirable, 0 undesirable); pairs give 1 and 0 themselves. */
  labels?: readonly number[];
}

export interface StepOutput {
  loss: torch.Tensor;
  /** Diffusion-DPO's (sigmoid) intermediate values; null for the other objectives and SFT. */
  dpo: DpoLossOutput | null;
  /** The pairwise objective's loss and logged values; null for SFT. */
  preference: PairLossOutput | null;
  /** The timestep of each entry of preference.margin (a pair's, or for KTO an image's). */
  marginTimesteps: torch.Tensor | null;
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

interface Conditioning {
  encoderHiddenStates: torch.Tensor;
  pooledPromptEmbeds: torch.Tensor | null;
  addTimeIds: torch.Tensor | null;
}

/** Text conditioning for one caption per pair (or per image for SFT), on `device`. */
type Conditioner = (batch: StepBatch, device: torch.Device) => Conditioning;

function sdConditioner(m: DiffusionModels, placement: FrozenPlacement): Conditioner {
  return (batch, device) => {
    if (batch.encoderHiddenStates) return { encoderHiddenStates: batch.encoderHiddenStates.to({ device }), pooledPromptEmbeds: null, addTimeIds: null };
    const encoder = m.textEncoder;
    if (!batch.inputIds || !encoder) throw new Error('SD steps need input ids and a text encoder (or precomputed encoder hidden states)');
    const ehs = placement.run(encoder, (dev) => torch.noGrad(() => encoder.forward(batch.inputIds!.to({ device: dev })).lastHiddenState));
    return { encoderHiddenStates: ehs.to({ device }), pooledPromptEmbeds: null, addTimeIds: null };
  };
}

function sdxlConditioner(m: DiffusionModels, cfg: StepConfig, placement: FrozenPlacement): Conditioner {
  const res = cfg.resolution;
  const ids = cfg.timestepMode === 'refiner' ? [res, res, 0, 0, 6.0] : [res, res, 0, 0, res, res];
  return (batch, device) => {
    const addTimeIds = () => torch.tensor(ids, { dtype: cfg.weightDtype, device }).unsqueeze(0).repeat((batch.pixelValues ?? batch.latentMoments)!.shape[0]!, 1);
    if (batch.encoderHiddenStates && batch.pooledPromptEmbeds) {
      return { encoderHiddenStates: batch.encoderHiddenStates.to({ device }), pooledPromptEmbeds: batch.pooledPromptEmbeds.to({ device }), addTimeIds: addTimeIds() };
    }
    if (!batch.captions) throw new Error('SDXL steps need the captions (or precomputed encoderHiddenStates and pooledPromptEmbeds)');
    const encode = () => encodeSdxlPrompt(m, batch.captions!);
    const encoders = [m.textEncoder, m.textEncoder2].filter((e): e is NonNullable<typeof e> => e !== null);
    const { promptEmbeds, pooled } = placement.runAll(encoders, encode);
    return { encoderHiddenStates: promptEmbeds.to({ device }), pooledPromptEmbeds: pooled.to({ device }), addTimeIds: addTimeIds() };
  };
}

function timestepMap(mode: TimestepMode): (t: torch.Tensor) => torch.Tensor {
  if (mode === 'refiner') return (t) => t.remainder(200);
  if (mode === 'turbo') return (t) => t.remainder(4).mul(250).add(249);
  return (t) => t;
}

export type DiffusionStep = (batch: StepBatch) => StepOutput;

/** mean + std * eps with the per-sample eps on the posterior's device and dtype. */
function posteriorSample(dist: DiagonalGaussianDistribution, draws: StepDraws): torch.Tensor {
  const eps = draws.randn(dist.mean.shape.slice(1), dist.mean.dtype);
  return dist.mean.add(dist.std.mul(eps.to({ device: dist.mean.device })));
}

/**
 * The step for these models and settings. DPO pairs share noise and timestep; the conditioning of
 * a pair is computed once and repeated for its two images, as train.py does.
 */
export function createDiffusionStep(m: DiffusionModels, cfg: StepConfig): DiffusionStep {
  if (m.noise.config.predictionType !== 'epsilon') {
    throw new UserError(`the scheduler's prediction_type is '${m.noise.config.predictionType}': Diffusion-DPO as in the reference trains epsilon-prediction models only`);
  }
  const lossType = cfg.lossType ?? 'sigmoid';
  if (cfg.method === 'dpo' && needsReference(lossType) && !m.refUnet && !m.adapters) throw new Error(`the ${lossType} objective needs a reference UNet (or LoRA adapters to switch off)`);
  const placement = cfg.placement ?? residentPlacement;
  const condition = m.kind === 'sdxl' ? sdxlConditioner(m, cfg, placement) : sdConditioner(m, placement);
  const mapTimesteps = timestepMap(cfg.timestepMode);
  // KTO draws each image's noise and timestep on its own, and takes pairs or labelled single images
  const kto = cfg.method === 'dpo' && lossType === 'kto';
  const vae = m.vae;
  const device = m.unet.parameters()[0]!.device;
  const noising = cfg.noising ?? { kind: 'forward' };
  /**
   * Runs fn with the reference model under no-grad and without autocast: the frozen UNet (on the
   * device its placement gives it, once for all of fn's calls), or, with LoRA, this UNet with its
   * adapters off (its base weights are in the weight dtype, as a separate reference's would be).
   */
  const withReference = <T>(fn: (unet: UNet2DConditionModel, dev: torch.Device) => T): T => {
    if (m.refUnet) return placement.run(m.refUnet, (dev) => torch.noGrad(() => fn(m.refUnet!, dev)));
    if (m.adapters) return m.adapters.disabled(() => torch.noGrad(() => fn(m.unet, device)));
    throw new Error('no reference model: neither a reference UNet nor LoRA adapters to switch off');
  };

  // preferred and dispreferred on the batch axis
  return (batch) => torch.tidy(() => {
    // two images per sample (pairs, preferred first) or one (SFT, labelled single images)
    const pairs = cfg.method === 'dpo' && (batch.latentMoments ? true : batch.pixelValues!.shape[1] === 6);
    if (kto && !pairs && !batch.labels) throw new Error('KTO on single images needs each image\'s label');
    const onBatchAxis = (t: torch.Tensor) => (pairs ? torch.cat(t.chunk(2, 1), 0) : t);
    const draws = batch.sampleSeeds ? perSampleDraws(batch.sampleSeeds, pairs ? 2 : 1, device) : null;
    // 1-2. latents: drawn from the VAE's posterior of the pixels, or of cached posterior parameters
    let latents: torch.Tensor;
    if (batch.latentMoments) {
      const scale = vae?.config.scalingFactor ?? cfg.latentScalingFactor;
      if (scale === undefined) throw new Error('cached latents need the VAE\'s scaling factor (StepConfig.latentScalingFactor)');
      let moments = onBatchAxis(batch.latentMoments.to({ device }));
      const format = cfg.latentMomentsFormat?.[moments.shape[0] === 1 ? 'single' : 'batched'];
      if (format) moments = moments.contiguous(format);
      const dist = new DiagonalGaussianDistribution(moments);
      latents = (draws ? posteriorSample(dist, draws) : dist.sample()).mul(scale);
    } else {
      if (!batch.pixelValues) throw new Error('a step needs pixelValues or latentMoments');
      if (!vae) throw new Error('this step has no VAE: feed it latentMoments');
      const feed = onBatchAxis(batch.pixelValues.to({ device }));
      latents = placement.run(vae, (dev) => torch.noGrad(() => {
        const dist = vae.encode(feed.to({ dtype: cfg.weightDtype, device: dev }));
        return (draws ? posteriorSample(dist, draws) : dist.sample()).mul(vae.config.scalingFactor);
      })).to({ device });
    }

    // 3. noise and timesteps, drawn in the reference's order (or per sample)
    const [rows, channels] = [latents.shape[0]!, latents.shape[1]!];
    let noise = draws ? draws.randn(latents.shape.slice(1), latents.dtype) : torch.randnLike(latents);
    if (cfg.noiseOffset) noise = noise.add((draws ? draws.randn([channels, 1, 1]) : torch.randn([rows, channels, 1, 1], { device: latents.device })).mul(cfg.noiseOffset));
    const perturbed = cfg.inputPerturbation ? noise.add((draws ? draws.randn(noise.shape.slice(1), noise.dtype) : torch.randnLike(noise)).mul(cfg.inputPerturbation)) : null;
    let timesteps = mapTimesteps(draws ? draws.randint(m.noise.config.numTrainTimesteps) : torch.randint(0, m.noise.config.numTrainTimesteps, [rows], { device: latents.device }));
    if (pairs && !kto) {
      // the same timestep and noise for both images of a pair (the perturbed noise is not shared, as in train.py)
      timesteps = timesteps.chunk(2)[0]!.repeat(2);
      noise = noise.chunk(2)[0]!.repeat(2, 1, 1, 1);
    }

    // 5 (before 4: DDIM inversion needs it). conditioning, per caption, then repeated for the pair's two images
    const c = condition(batch, device);
    const twice = (t: torch.Tensor | null) => (t && pairs ? t.repeat(2, ...t.shape.slice(1).map(() => 1)) : t);
    const encoderHiddenStates = twice(c.encoderHiddenStates)!;
    const pooledPromptEmbeds = twice(c.pooledPromptEmbeds);
    const addTimeIds = twice(c.addTimeIds);
    const addedCond: AddedCond | undefined = pooledPromptEmbeds && addTimeIds ? { textEmbeds: pooledPromptEmbeds, timeIds: addTimeIds } : undefined;

    /** `unet`'s prediction on `dev` for this batch's conditioning (inputs moved there, in the weight dtype), back on the device. */
    const predictOn = (unet: UNet2DConditionModel, dev: torch.Device): EpsilonPredictor => (x, t) => unet.forward(
      x.to({ dtype: cfg.weightDtype, device: dev }), t.to({ device: dev }), encoderHiddenStates.to({ device: dev }),
      { addedCond: addedCond && { textEmbeds: addedCond.textEmbeds.to({ device: dev }), timeIds: addedCond.timeIds.to({ device: dev }) } },
    ).sample.to({ device });

    // 4. forward diffusion, or DDIM inversion of the latents (the noise is then the one it implies),
    // by the reference or by the trained UNet (InPO's train.py inverts with the model being trained)
    let noisyLatents: torch.Tensor;
    if (noising.kind === 'ddim_inversion') {
      const alphas = m.noise.alphasCumprodOn(device);
      const o = { steps: noising.steps, eta: noising.eta };
      const trained = predictOn(m.unet, device);
      const inv = noising.model === 'trained'
        ? torch.noGrad(() => ddimInvert((x, t) => (cfg.autocast ? torch.autocast(cfg.autocast, () => trained(x, t)).float() : trained(x, t)), latents, timesteps, alphas, o))
        : withReference((unet, dev) => ddimInvert(predictOn(unet, dev), latents, timesteps, alphas, o));
      noisyLatents = inv.noisy.to({ dtype: latents.dtype });
      noise = inv.noise.to({ dtype: latents.dtype });
    } else {
      noisyLatents = m.noise.addNoise(latents, perturbed ?? noise, timesteps);
    }

    // 6-9. predictions and loss (target = noise: epsilon prediction)
    const target = noise;
    const predict = () => m.unet.forward(noisyLatents, timesteps, encoderHiddenStates, { addedCond }).sample;
    const modelPred = cfg.autocast ? torch.autocast(cfg.autocast, predict).float() : predict();
    const inner = { latents, noise, timesteps, noisyLatents, encoderHiddenStates, pooledPromptEmbeds, addTimeIds, modelPred };
    if (cfg.method === 'sft') return { ...inner, loss: sftLoss(modelPred, target), dpo: null, preference: null, marginTimesteps: null, refPred: null };
    const refPred = needsReference(lossType) ? withReference((unet, dev) => predictOn(unet, dev)(noisyLatents, timesteps)) : null;
    const labels = !kto ? undefined : pairs
      ? torch.cat([torch.ones([rows / 2], { device }), torch.zeros([rows / 2], { device })])
      : torch.tensor([...batch.labels!], { dtype: 'float32', device });
    const preference = pairLoss(lossType, modelPred, refPred, target, {
      beta: cfg.betaDpo, betaMapo: cfg.betaMapo, mapoSnrValue: cfg.mapoSnrValue, numTrainTimesteps: m.noise.config.numTrainTimesteps,
      labels, lambdaDesirable: cfg.ktoLambdaDesirable, lambdaUndesirable: cfg.ktoLambdaUndesirable,
    });
    const marginTimesteps = kto ? timesteps : timesteps.chunk(2)[0]!;
    return { ...inner, loss: preference.loss, dpo: preference.dpo, preference, marginTimesteps, refPred };
  });
}
