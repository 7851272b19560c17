// Sampling schedulers of diffusers, for epsilon-prediction models: DDPM, DDIM, PNDM (PLMS, as SD1.5
// ships it), Euler, Euler ancestral and DPM-Solver++ 2M (optionally with Karras sigmas). Each reads a
// scheduler_config.json, builds its timestep table for a number of inference steps exactly as
// diffusers does (timestep_spacing leading / linspace / trailing, steps_offset), and steps a sample.
// Tables and coefficients are computed in float64 from the float32 alphas_cumprod; tensors stay in
// the sample's dtype.
//
// Notation: abar_t = alphas_cumprod[t]; sigma_t = sqrt((1 - abar_t) / abar_t) (the Karras/EDM noise
// level); x0 = predicted clean sample; eps = the model's output.
import * as torch from '../torch/index.js';
import { NoiseSchedule, parseNoiseScheduleConfig, type NoiseScheduleConfig } from './noise_schedule.js';
import { UserError } from '../util/errors.js';

export type Spacing = 'leading' | 'linspace' | 'trailing';

export interface StepResult {
  prevSample: torch.Tensor;
  predOriginalSample?: torch.Tensor;
}

export interface Scheduler {
  readonly name: string;
  timesteps: number[];
  initNoiseSigma: number;
  setTimesteps(n: number): void;
  /** Scales the model input (Euler-type samplers); the identity for the others. */
  scaleModelInput(sample: torch.Tensor, t: number): torch.Tensor;
  step(modelOutput: torch.Tensor, t: number, sample: torch.Tensor, o?: { generator?: torch.Generator; eta?: number }): StepResult;
  /** Frees the tensors multistep samplers keep between steps. */
  dispose(): void;
}

/** numpy's round(): halves to even. */
const npRound = (x: number) => {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};
/** numpy.linspace(a, b, n): a + i * step (the same float64 arithmetic), the last value exactly b. */
const linspace = (a: number, b: number, n: number) => {
  if (n === 1) return [a];
  const step = (b - a) / (n - 1);
  return Array.from({ length: n }, (_, i) => (i === n - 1 ? b : i * step + a));
};
/**
 * numpy.arange(start, stop, step) for floats: ceil((stop - start) / step) values start + i * delta,
 * where numpy's delta is (start + step) - start, not step (its fill function derives it from the
 * first two values). Not a loop of repeated subtraction, which drifts and can add a value.
 */
const arange = (start: number, stop: number, step: number) => {
  const delta = start + step - start;
  return Array.from({ length: Math.max(0, Math.ceil((stop - start) / step)) }, (_, i) => start + i * delta);
};
/** Trailing spacing (arXiv 2305.08891, Table 2): round(arange(T, 0, -T/n)) - 1, from T - 1 down. */
const trailing = (T: number, n: number) => arange(T, 0, -T / n).map((t) => npRound(t) - 1);


abstract class Base {
  timesteps: number[] = [];
  initNoiseSigma = 1.0;
  protected readonly ac: number[];
  protected readonly cfg: NoiseScheduleConfig;
  protected numInferenceSteps = 0;
  readonly spacing: Spacing;
  readonly stepsOffset: number;

  constructor(readonly raw: Record<string, unknown>) {
    this.cfg = parseNoiseScheduleConfig(raw);
    if (this.cfg.predictionType !== 'epsilon') throw new UserError(`${this.constructor.name}: prediction_type '${this.cfg.predictionType}' is not supported (epsilon only)`);
    const s = new NoiseSchedule(this.cfg);
    this.ac = Array.from(s.alphasCumprod.toTypedArray() as Float32Array);
    s.dispose();
    this.spacing = ((raw.timestep_spacing as Spacing | undefined) ?? this.defaultSpacing()) as Spacing;
    if (!['leading', 'linspace', 'trailing'].includes(this.spacing)) throw new UserError(`timestep_spacing '${this.spacing}' is not supported`);
    this.stepsOffset = (raw.steps_offset as number | undefined) ?? 0;
  }
  protected defaultSpacing(): Spacing {
    return 'leading';
  }
  protected get T(): number {
    return this.cfg.numTrainTimesteps;
  }
  /** Integer timesteps of DDPM/DDIM/PNDM, ascending (diffusers' set_timesteps before it reverses them). */
  protected ascendingTimesteps(n: number): number[] {
    if (this.spacing === 'linspace') return linspace(0, this.T - 1, n).map(npRound);
    if (this.spacing === 'leading') {
      const ratio = Math.floor(this.T / n);
      return Array.from({ length: n }, (_, i) => npRound(i * ratio) + this.stepsOffset);
    }
    return trailing(this.T, n).reverse();
  }
  /** The same, descending: DDPM's and DDIM's table. */
  protected integerTimesteps(n: number): number[] {
    return this.ascendingTimesteps(n).reverse();
  }
  scaleModelInput(sample: torch.Tensor, _t?: number): torch.Tensor {
    void _t;
    return sample.clone();
  }
  dispose(): void {}
}

export class DDPMScheduler extends Base implements Scheduler {
  readonly name = 'ddpm';
  setTimesteps(n: number): void {
    if (n > this.T) throw new RangeError(`num_inference_steps ${n} exceeds num_train_timesteps ${this.T}`);
    this.numInferenceSteps = n;
    this.timesteps = this.integerTimesteps(n);
  }
  #variance(t: number): number {
    const prev = t - Math.floor(this.T / this.numInferenceSteps);
    const abar = this.ac[t]!;
    const abarPrev = prev >= 0 ? this.ac[prev]! : 1.0;
    const beta = 1 - abar / abarPrev;
    return Math.max(((1 - abarPrev) / (1 - abar)) * beta, 1e-20); // fixed_small
  }
  step(eps: torch.Tensor, t: number, sample: torch.Tensor, o: { generator?: torch.Generator } = {}): StepResult {
    const prev = t - Math.floor(this.T / this.numInferenceSteps);
    const abar = this.ac[t]!;
    const abarPrev = prev >= 0 ? this.ac[prev]! : 1.0;
    const betaProd = 1 - abar;
    const betaProdPrev = 1 - abarPrev;
    const alpha = abar / abarPrev;
    const beta = 1 - alpha;
    return torch.tidy(() => {
      const x0 = sample.sub(eps.mul(Math.sqrt(betaProd))).div(Math.sqrt(abar));
      let prevSample = x0.mul((Math.sqrt(abarPrev) * beta) / betaProd).add(sample.mul((Math.sqrt(alpha) * betaProdPrev) / betaProd));
      if (t > 0) {
        const noise = torch.randn(eps.shape, { generator: o.generator, dtype: eps.dtype, device: o.generator?.device ?? eps.device }).to(eps.device);
        prevSample = prevSample.add(noise.mul(Math.sqrt(this.#variance(t))));
      }
      return { prevSample, predOriginalSample: x0 };
    });
  }
}

export class DDIMScheduler extends Base implements Scheduler {
  readonly name = 'ddim';
  readonly finalAbar: number;
  constructor(raw: Record<string, unknown>) {
    super(raw);
    this.finalAbar = (raw.set_alpha_to_one as boolean | undefined) ?? true ? 1.0 : this.ac[0]!;
  }
  setTimesteps(n: number): void {
    if (n > this.T) throw new RangeError(`num_inference_steps ${n} exceeds num_train_timesteps ${this.T}`);
    this.numInferenceSteps = n;
    this.timesteps = this.integerTimesteps(n);
  }
  step(eps: torch.Tensor, t: number, sample: torch.Tensor, o: { generator?: torch.Generator; eta?: number } = {}): StepResult {
    const eta = o.eta ?? 0;
    const prev = t - Math.floor(this.T / this.numInferenceSteps);
    const abar = this.ac[t]!;
    const abarPrev = prev >= 0 ? this.ac[prev]! : this.finalAbar;
    const betaProd = 1 - abar;
    const variance = ((1 - abarPrev) / betaProd) * (1 - abar / abarPrev);
    const std = eta * Math.sqrt(variance);
    return torch.tidy(() => {
      const x0 = sample.sub(eps.mul(Math.sqrt(betaProd))).div(Math.sqrt(abar));
      const direction = eps.mul(Math.sqrt(1 - abarPrev - std * std));
      let prevSample = x0.mul(Math.sqrt(abarPrev)).add(direction);
      if (eta > 0) {
        const noise = torch.randn(eps.shape, { generator: o.generator, dtype: eps.dtype, device: o.generator?.device ?? eps.device }).to(eps.device);
        prevSample = prevSample.add(noise.mul(std));
      }
      return { prevSample, predOriginalSample: x0 };
    });
  }
}

/** PNDM with skip_prk_steps (what SD1.5 ships): linear multistep (PLMS) updates. */
export class PNDMScheduler extends Base implements Scheduler {
  readonly name = 'pndm';
  readonly finalAbar: number;
  #ets: torch.Tensor[] = [];
  #counter = 0;
  #curSample: torch.Tensor | null = null;
  constructor(raw: Record<string, unknown>) {
    super(raw);
    if (raw.skip_prk_steps === false) throw new UserError('PNDM with Runge-Kutta warm-up steps (skip_prk_steps false) is not supported');
    this.finalAbar = (raw.set_alpha_to_one as boolean | undefined) ?? true ? 1.0 : this.ac[0]!;
  }
  setTimesteps(n: number): void {
    this.numInferenceSteps = n;
    // skip_prk_steps: the second-to-last timestep is repeated (PLMS's warm-up), then all reversed
    const base = this.ascendingTimesteps(n);
    this.timesteps = [...base.slice(0, -1), ...base.slice(-2, -1), ...base.slice(-1)].reverse();
    this.#reset();
  }
  override dispose(): void {
    this.#reset();
  }
  #reset(): void {
    for (const e of this.#ets) e.dispose();
    this.#ets = [];
    this.#curSample?.dispose();
    this.#curSample = null;
    this.#counter = 0;
  }
  step(eps: torch.Tensor, timestep: number, sample: torch.Tensor): StepResult {
    const ratio = Math.floor(this.T / this.numInferenceSteps);
    let t = timestep;
    let prev = t - ratio;
    if (this.#counter !== 1) {
      while (this.#ets.length > 3) this.#ets.shift()!.dispose();
      this.#ets.push(eps.clone().keep());
    } else {
      prev = t;
      t = t + ratio;
    }
    const out = torch.tidy(() => {
      const e = this.#ets;
      let m: torch.Tensor;
      let x = sample;
      if (e.length === 1 && this.#counter === 0) {
        m = eps;
        this.#curSample = sample.clone().keep();
      } else if (e.length === 1 && this.#counter === 1) {
        m = eps.add(e[e.length - 1]!).div(2);
        x = this.#curSample!;
      } else if (e.length === 2) {
        m = e[1]!.mul(3).sub(e[0]!).div(2);
      } else if (e.length === 3) {
        m = e[2]!.mul(23).sub(e[1]!.mul(16)).add(e[0]!.mul(5)).div(12);
      } else {
        m = e[3]!.mul(55).sub(e[2]!.mul(59)).add(e[1]!.mul(37)).sub(e[0]!.mul(9)).div(24);
      }
      const abar = this.ac[t]!;
      const abarPrev = prev >= 0 ? this.ac[prev]! : this.finalAbar;
      const sampleCoeff = Math.sqrt(abarPrev / abar);
      const denom = abar * Math.sqrt(1 - abarPrev) + Math.sqrt(abar * (1 - abar) * abarPrev);
      return x.mul(sampleCoeff).sub(m.mul((abarPrev - abar) / denom));
    });
    if (this.#counter === 1) {
      this.#curSample?.dispose();
      this.#curSample = null;
    }
    this.#counter++;
    return { prevSample: out };
  }
}

/** Noise levels and their interpolation, shared by the Euler samplers. */
abstract class SigmaBase extends Base {
  sigmas: number[] = [];
  #index = 0;
  protected override defaultSpacing(): Spacing {
    return 'linspace';
  }
  /**
   * sqrt((1 - abar) / abar), computed as diffusers does: with libtorch's float32 kernels on the
   * float32 alphas_cumprod (its vectorised float32 square root is not always the correctly rounded
   * one, so float64 arithmetic would differ in the last bit).
   */
  protected fullSigmas(): number[] {
    return torch.tidy(() => {
      const ac = torch.tensor(this.ac, { dtype: 'float32' });
      return Array.from(ac.rsub(1).div(ac).pow(0.5).toTypedArray() as Float32Array);
    });
  }
  setTimesteps(n: number): void {
    let ts: number[];
    if (this.spacing === 'linspace') ts = linspace(0, this.T - 1, n).reverse();
    else if (this.spacing === 'leading') {
      const ratio = Math.floor(this.T / n);
      ts = Array.from({ length: n }, (_, i) => npRound(i * ratio) + this.stepsOffset).reverse();
    } else {
      ts = trailing(this.T, n);
    }
    const full = this.fullSigmas();
    // np.interp over integer positions (clamped at the ends: leading spacing's offset reaches T at
    // 1000 steps), then float32 as diffusers stores them
    const interp = (t: number) => {
      if (t <= 0) return full[0]!;
      if (t >= full.length - 1) return full[full.length - 1]!;
      const lo = Math.floor(t);
      if (t === lo) return full[lo]!;
      return (full[lo + 1]! - full[lo]!) * (t - lo) + full[lo]!;
    };
    this.sigmas = [...ts.map((t) => Math.fround(interp(t))), 0];
    this.timesteps = ts;
    let max = 0;
    for (const x of this.sigmas) max = Math.max(max, x);
    // diffusers 0.20 computes it on the float32 sigmas tensor
    this.initNoiseSigma = this.spacing === 'leading' ? torch.tidy(() => torch.tensor([max], { dtype: 'float32' }).pow(2).add(1).pow(0.5).item() as number) : max;
    this.#index = 0;
  }
  protected indexOf(t: number): number {
    const i = this.timesteps.indexOf(t);
    return i >= 0 ? i : this.#index;
  }
  protected advance(): void {
    this.#index++;
  }
  override scaleModelInput(sample: torch.Tensor, t: number): torch.Tensor {
    const sigma = this.sigmas[this.indexOf(t)]!;
    return sample.div(Math.sqrt(sigma * sigma + 1));
  }
}

export class EulerDiscreteScheduler extends SigmaBase implements Scheduler {
  readonly name = 'euler';
  constructor(raw: Record<string, unknown>) {
    super(raw);
    if (raw.use_karras_sigmas === true) throw new UserError('Euler with Karras sigmas is not supported (DPM-Solver++ 2M Karras is)');
    if ((raw.interpolation_type ?? 'linear') !== 'linear') throw new UserError(`Euler: interpolation_type '${String(raw.interpolation_type)}' is not supported (linear)`);
  }
  step(eps: torch.Tensor, t: number, sample: torch.Tensor, o: { generator?: torch.Generator } = {}): StepResult {
    const i = this.indexOf(t);
    const sigma = this.sigmas[i]!;
    const next = this.sigmas[i + 1]!;
    const out = torch.tidy(() => {
      // diffusers draws the churn noise even when s_churn = 0 (it is then multiplied by 0): keep the
      // generator in step with it
      torch.randn(eps.shape, { generator: o.generator, dtype: eps.dtype, device: o.generator?.device ?? eps.device });
      const x0 = sample.sub(eps.mul(sigma));
      const derivative = sample.sub(x0).div(sigma);
      return { prevSample: sample.add(derivative.mul(next - sigma)), predOriginalSample: x0 };
    });
    this.advance();
    return out;
  }
}

export class EulerAncestralDiscreteScheduler extends SigmaBase implements Scheduler {
  readonly name = 'euler_ancestral';
  step(eps: torch.Tensor, t: number, sample: torch.Tensor, o: { generator?: torch.Generator } = {}): StepResult {
    const i = this.indexOf(t);
    const from = this.sigmas[i]!;
    const to = this.sigmas[i + 1]!;
    const up = Math.sqrt((to * to * (from * from - to * to)) / (from * from));
    const down = Math.sqrt(to * to - up * up);
    const out = torch.tidy(() => {
      const x0 = sample.sub(eps.mul(from));
      const derivative = sample.sub(x0).div(from);
      const noise = torch.randn(eps.shape, { generator: o.generator, dtype: eps.dtype, device: o.generator?.device ?? eps.device }).to(eps.device);
      return { prevSample: sample.add(derivative.mul(down - from)).add(noise.mul(up)), predOriginalSample: x0 };
    });
    this.advance();
    return out;
  }
}

/** DPM-Solver++ (2M, midpoint, lower-order final steps), diffusers 0.20. */
export class DPMSolverMultistepScheduler extends Base implements Scheduler {
  readonly name = 'dpmpp_2m';
  readonly karras: boolean;
  #outputs: torch.Tensor[] = [];
  #lowerOrderNums = 0;
  constructor(raw: Record<string, unknown>) {
    super(raw);
    this.karras = raw.use_karras_sigmas === true;
    if ((raw.algorithm_type ?? 'dpmsolver++') !== 'dpmsolver++' || (raw.solver_order ?? 2) !== 2 || (raw.solver_type ?? 'midpoint') !== 'midpoint') {
      throw new UserError('DPM-Solver: only algorithm_type dpmsolver++, solver_order 2, solver_type midpoint are supported');
    }
  }
  override dispose(): void {
    for (const o of this.#outputs) o.dispose();
    this.#outputs = [];
  }
  protected override defaultSpacing(): Spacing {
    return 'linspace';
  }
  setTimesteps(n: number): void {
    const last = this.T;
    let ts: number[];
    if (this.spacing === 'linspace') ts = linspace(0, last - 1, n + 1).map(npRound).reverse().slice(0, -1);
    else if (this.spacing === 'leading') {
      const ratio = Math.floor(last / (n + 1));
      ts = Array.from({ length: n + 1 }, (_, i) => npRound(i * ratio) + this.stepsOffset).reverse().slice(0, -1);
    } else {
      ts = trailing(last, n);
    }
    if (this.karras) {
      const sigmas = this.ac.map((a) => Math.sqrt((1 - a) / a));
      const logSigmas = sigmas.map(Math.log);
      // diffusers 0.20's _convert_to_karras and _sigma_to_t, as they behave on ascending sigmas
      const sMin = sigmas[sigmas.length - 1]!;
      const sMax = sigmas[0]!;
      const rho = 7.0;
      const ks = linspace(0, 1, n).map((r) => (sMax ** (1 / rho) + r * (sMin ** (1 / rho) - sMax ** (1 / rho))) ** rho);
      ts = ks.map((s) => {
        const ls = Math.log(s);
        let low = 0;
        for (let i = 0; i < logSigmas.length; i++) if (ls - logSigmas[i]! >= 0) low = i;
        low = Math.min(low, logSigmas.length - 2);
        const w = Math.min(1, Math.max(0, (logSigmas[low]! - ls) / (logSigmas[low]! - logSigmas[low + 1]!)));
        return npRound((1 - w) * low + w * (low + 1));
      }).reverse();
    }
    // duplicates are removed, keeping first occurrences in order
    this.timesteps = ts.filter((t, i) => ts.indexOf(t) === i);
    this.numInferenceSteps = this.timesteps.length;
    for (const o of this.#outputs) o.dispose();
    this.#outputs = [];
    this.#lowerOrderNums = 0;
  }
  #alpha(t: number): number {
    return Math.sqrt(this.ac[t]!);
  }
  #sigma(t: number): number {
    return Math.sqrt(1 - this.ac[t]!);
  }
  #lambda(t: number): number {
    return Math.log(this.#alpha(t)) - Math.log(this.#sigma(t));
  }
  step(eps: torch.Tensor, t: number, sample: torch.Tensor): StepResult {
    const ts = this.timesteps;
    let i = ts.indexOf(t);
    if (i < 0) i = ts.length - 1;
    const prev = i === ts.length - 1 ? 0 : ts[i + 1]!;
    const lowerOrderFinal = i === ts.length - 1 && ts.length < 15;
    const lowerOrderSecond = i === ts.length - 2 && ts.length < 15;
    void lowerOrderSecond; // with solver order 2 the second-order update is the highest anyway
    const x0 = torch.tidy(() => sample.sub(eps.mul(this.#sigma(t))).div(this.#alpha(t))).keep();
    this.#outputs.push(x0);
    if (this.#outputs.length > 2) this.#outputs.shift()!.dispose();
    const prevSample = torch.tidy(() => {
      const lt = this.#lambda(prev);
      const ls0 = this.#lambda(t);
      const h = lt - ls0;
      const at = this.#alpha(prev);
      const st = this.#sigma(prev);
      const ss0 = this.#sigma(t);
      const m0 = this.#outputs[this.#outputs.length - 1]!;
      const base = sample.mul(st / ss0).sub(m0.mul(at * (Math.exp(-h) - 1.0)));
      if (this.#lowerOrderNums < 1 || lowerOrderFinal) return base;
      const s1 = ts[i - 1]!;
      const h0 = ls0 - this.#lambda(s1);
      const r0 = h0 / h;
      const d1 = m0.sub(this.#outputs[0]!).mul(1.0 / r0);
      return base.sub(d1.mul(0.5 * at * (Math.exp(-h) - 1.0)));
    });
    if (this.#lowerOrderNums < 2) this.#lowerOrderNums++;
    return { prevSample, predOriginalSample: x0.clone() };
  }
}

export const SCHEDULERS = {
  ddpm: DDPMScheduler,
  ddim: DDIMScheduler,
  pndm: PNDMScheduler,
  euler: EulerDiscreteScheduler,
  euler_ancestral: EulerAncestralDiscreteScheduler,
  dpmpp_2m: DPMSolverMultistepScheduler,
} as const;

export type SchedulerName = keyof typeof SCHEDULERS | 'dpmpp_2m_karras';

/** A scheduler by name from a scheduler_config.json (dpmpp_2m_karras sets use_karras_sigmas). */
export function createScheduler(name: SchedulerName, raw: Record<string, unknown>): Scheduler {
  if (name === 'dpmpp_2m_karras') return new DPMSolverMultistepScheduler({ ...raw, use_karras_sigmas: true });
  const cls = SCHEDULERS[name];
  if (!cls) throw new UserError(`unknown scheduler '${String(name)}' (expected one of ${[...Object.keys(SCHEDULERS), 'dpmpp_2m_karras'].join(', ')})`);
  return new cls(raw);
}

/** The scheduler a diffusers `_class_name` names. */
export function schedulerFromConfig(raw: Record<string, unknown>): Scheduler {
  const byClass: Record<string, SchedulerName> = {
    DDPMScheduler: 'ddpm', DDIMScheduler: 'ddim', PNDMScheduler: 'pndm', EulerDiscreteScheduler: 'euler',
    EulerAncestralDiscreteScheduler: 'euler_ancestral', DPMSolverMultistepScheduler: 'dpmpp_2m',
  };
  const name = byClass[String(raw._class_name)];
  if (!name) throw new UserError(`scheduler class '${String(raw._class_name)}' is not supported (${Object.keys(byClass).join(', ')})`);
  return createScheduler(name, raw);
}
