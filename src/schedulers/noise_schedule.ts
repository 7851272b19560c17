// The training noise schedule of diffusers' DDPMScheduler (what train.py's `noise_scheduler` is):
// betas from a scheduler_config.json, alphas_cumprod = cumprod(1 - betas) in float32, and
// add_noise(x0, eps, t) = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps. Plus the zero-terminal-SNR
// rescale (Lin et al. 2023, arXiv 2305.08891) that train.py applies to turbo models.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../torch/index.js';
import { UserError } from '../util/errors.js';

export interface NoiseScheduleConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
  trainedBetas: number[] | null;
  predictionType: 'epsilon' | 'v_prediction' | 'sample';
}

/** A scheduler_config.json (of any diffusers scheduler class) read with DDPMScheduler's defaults. */
export function parseNoiseScheduleConfig(raw: Record<string, unknown>): NoiseScheduleConfig {
  const schedule = (raw.beta_schedule as string | undefined) ?? 'linear';
  if (!['linear', 'scaled_linear', 'squaredcos_cap_v2'].includes(schedule)) {
    throw new UserError(`scheduler config: beta_schedule '${schedule}' is not supported (linear, scaled_linear, squaredcos_cap_v2)`);
  }
  return {
    numTrainTimesteps: (raw.num_train_timesteps as number | undefined) ?? 1000,
    betaStart: (raw.beta_start as number | undefined) ?? 0.0001,
    betaEnd: (raw.beta_end as number | undefined) ?? 0.02,
    betaSchedule: schedule as NoiseScheduleConfig['betaSchedule'],
    trainedBetas: (raw.trained_betas as number[] | null | undefined) ?? null,
    predictionType: (raw.prediction_type as NoiseScheduleConfig['predictionType'] | undefined) ?? 'epsilon',
  };
}

export function loadNoiseScheduleConfig(schedulerFolder: string): NoiseScheduleConfig {
  return parseNoiseScheduleConfig(JSON.parse(readFileSync(join(schedulerFolder, 'scheduler_config.json'), 'utf8')) as Record<string, unknown>);
}

/** betas_for_alpha_bar with the cosine alpha_bar of Nichol & Dhariwal (max_beta 0.999). */
function cosineBetas(n: number): number[] {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * Math.PI / 2) ** 2;
  return Array.from({ length: n }, (_, i) => Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), 0.999));
}

export class NoiseSchedule {
  /** [T] float32 */
  readonly betas: torch.Tensor;
  /** [T] float32 */
  alphasCumprod: torch.Tensor;

  constructor(readonly config: NoiseScheduleConfig) {
    const c = config;
    this.betas = torch.tidy(() => {
      if (c.trainedBetas) return torch.tensor(c.trainedBetas, { dtype: 'float32' });
      if (c.betaSchedule === 'linear') return torch.linspace(c.betaStart, c.betaEnd, c.numTrainTimesteps, { dtype: 'float32' });
      if (c.betaSchedule === 'scaled_linear') return torch.linspace(c.betaStart ** 0.5, c.betaEnd ** 0.5, c.numTrainTimesteps, { dtype: 'float32' }).pow(2);
      return torch.tensor(cosineBetas(c.numTrainTimesteps), { dtype: 'float32' });
    }).keep();
    this.alphasCumprod = torch.tidy(() => this.betas.rsub(1).cumprod(0)).keep();
  }

  /**
   * train.py's enforce_zero_terminal_snr: rescale sqrt(abar) so the last timestep has zero signal
   * and the first keeps its value, then rebuild abar through per-step alphas (betas untouched).
   */
  enforceZeroTerminalSnr(): this {
    const next = torch.tidy(() => {
      let sqrtBar = this.betas.rsub(1).cumprod(0).sqrt();
      const first = sqrtBar.select(0, 0).clone();
      const last = sqrtBar.select(0, -1).clone();
      sqrtBar = sqrtBar.sub(last).mul(first.div(first.sub(last)));
      const bar = sqrtBar.pow(2);
      const alphas = torch.cat([bar.slice(0, 0, 1), bar.slice(0, 1).div(bar.slice(0, 0, -1))]);
      return alphas.cumprod(0);
    }).keep();
    this.alphasCumprod.dispose();
    this.alphasCumprod = next;
    this.#dropCopies();
    return this;
  }

  /** alphas_cumprod on each device and dtype asked for, made once: no host-to-device copy per step. */
  readonly #copies = new Map<string, torch.Tensor>();

  /** alphas_cumprod on `device` in `dtype` (cached; owned by the schedule, not to be disposed). */
  alphasCumprodOn(device: torch.Device, dtype: torch.DType = 'float32'): torch.Tensor {
    return this.#onDevice(device, dtype);
  }

  #onDevice(device: torch.Device, dtype: torch.DType): torch.Tensor {
    const key = `${device}/${dtype}`;
    let t = this.#copies.get(key);
    if (!t) {
      t = torch.tidy(() => this.alphasCumprod.to({ device, dtype })).keep();
      this.#copies.set(key, t);
    }
    return t;
  }

  #dropCopies(): void {
    for (const t of this.#copies.values()) t.dispose();
    this.#copies.clear();
  }

  /** sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, per sample t (DDPMScheduler.add_noise). */
  addNoise(original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor): torch.Tensor {
    return torch.tidy(() => {
      const ac = this.#onDevice(original.device, original.dtype);
      const t = timesteps.to(original.device);
      const shape = [t.shape[0]!, ...new Array(original.ndim - 1).fill(1)];
      const acT = ac.indexSelect(0, t);
      const sqrtAlpha = acT.pow(0.5).flatten().reshape(shape);
      const sqrtOneMinus = acT.rsub(1).pow(0.5).flatten().reshape(shape);
      return sqrtAlpha.mul(original).add(sqrtOneMinus.mul(noise));
    });
  }

  dispose(): void {
    this.betas.dispose();
    this.alphasCumprod.dispose();
    this.#dropCopies();
  }
}
