// Adafactor with the semantics of transformers 4.30 (transformers.optimization.Adafactor), which
// the reference trainer uses for SDXL: factored second moments for tensors of rank >= 2,
// update clipping by RMS, optional first moment (beta1), relative step sizes and parameter scaling.
//
// Notation (Shazeer & Stern 2018, Algorithm 4/5; transformers' implementation):
//   t            step;  beta2_t = 1 - t^decay_rate
//   rho_t        lr, or min(1e-2 | 1e-6 t, 1/sqrt(t)) with relative_step (warmup_init picks 1e-6 t)
//   alpha_t      rho_t, times max(eps2, RMS(theta)) with scale_parameter
//   R, C         row / column EMAs of g^2 + eps1;  V = (R / mean(R)) C  (rank >= 2), else EMA of g^2 + eps1
//   U = g / sqrt(V);  U <- U / max(1, RMS(U) / d);  U <- alpha_t U;  (beta1: U <- EMA of U)
//   theta <- theta - alpha_t * weight_decay * theta - U
import { noGrad } from '../autograd.js';
import { zeros, zerosLike } from '../creation.js';
import { tidy } from '../scope.js';
import type { Tensor } from '../tensor.js';
import { Optimizer } from './optimizer.js';

export interface AdafactorOptions {
  /** External learning rate; null with relativeStep (the default), required otherwise. */
  lr: number;
  eps: [number, number];
  clipThreshold: number;
  decayRate: number;
  beta1: number | null;
  weightDecay: number;
  scaleParameter: boolean;
  relativeStep: boolean;
  warmupInit: boolean;
}

export class Adafactor extends Optimizer<AdafactorOptions> {
  constructor(params: Tensor[] | ({ params: Tensor[] } & Partial<AdafactorOptions>)[], o: Partial<Omit<AdafactorOptions, 'lr'>> & { lr?: number | null } = {}) {
    const relativeStep = o.relativeStep ?? true;
    const warmupInit = o.warmupInit ?? false;
    if (o.lr != null && relativeStep) throw new Error('Cannot combine manual `lr` and `relative_step=True` options');
    if (warmupInit && !relativeStep) throw new Error('`warmup_init=True` requires `relative_step=True`');
    if (o.lr == null && !relativeStep) throw new Error('Adafactor needs `lr` when relative_step is false');
    super('Adafactor', params, {
      eps: [1e-30, 1e-3], clipThreshold: 1.0, decayRate: -0.8, beta1: null, weightDecay: 0.0,
      scaleParameter: true, ...o, relativeStep, warmupInit,
      // transformers stores lr=None with relative steps; 0 stands for it here (it is never read then).
      lr: o.lr ?? 0,
    });
  }

  protected validate(h: AdafactorOptions): void {
    if (!(h.lr >= 0)) throw new RangeError(`Invalid learning rate: ${h.lr}`);
    if (h.beta1 !== null && !(h.beta1 >= 0 && h.beta1 < 1)) throw new RangeError(`Invalid beta1: ${h.beta1}`);
  }

  /** transformers' Adafactor._get_lr; `rms` is the parameter's RMS (a 0-d tensor). */
  static #lr(h: AdafactorOptions, step: number, rms: Tensor): Tensor | number {
    let relStepSize = h.lr;
    if (h.relativeStep) {
      const minStep = h.warmupInit ? 1e-6 * step : 1e-2;
      relStepSize = Math.min(minStep, 1.0 / Math.sqrt(step));
    }
    // max(eps2, RMS) stays on the device: no host sync per parameter.
    return h.scaleParameter ? rms.clampMin(h.eps[1]).mul(relStepSize) : relStepSize;
  }

  static #rms(t: Tensor): Tensor {
    return t.norm(2).div(Math.sqrt(t.numel()));
  }

  step(): void {
    for (const group of this.paramGroups) {
      const h = group.hyper;
      for (const p of group.params) {
        tidy(() => noGrad(() => this.#update(p, h)));
      }
    }
  }

  #update(p: Tensor, h: AdafactorOptions): void {
    let grad = p.grad;
    if (!grad) return;
    if (grad.dtype === 'float16' || grad.dtype === 'bfloat16') grad = grad.float();
    const shape = grad.shape;
    const factored = shape.length >= 2;
    const useFirstMoment = h.beta1 !== null;
    const state = this.stateOf(p, () => {
      const s: Record<string, Tensor | number> = { step: 0 };
      if (useFirstMoment) s.exp_avg = zerosLike(grad!);
      if (factored) {
        s.exp_avg_sq_row = zeros(shape.slice(0, -1), { dtype: grad!.dtype, device: grad!.device });
        s.exp_avg_sq_col = zeros([...shape.slice(0, -2), shape[shape.length - 1]!], { dtype: grad!.dtype, device: grad!.device });
      } else {
        s.exp_avg_sq = zerosLike(grad!);
      }
      return s;
    });

    const pFp32 = p.dtype === 'float16' || p.dtype === 'bfloat16' ? p.float() : p;
    const step = (state.step as number) + 1;
    state.step = step;
    const lr = Adafactor.#lr(h, step, Adafactor.#rms(pFp32));
    const beta2t = 1.0 - Math.pow(step, h.decayRate);

    let update = grad.pow(2).add(h.eps[0]);
    if (factored) {
      const row = state.exp_avg_sq_row as Tensor;
      const col = state.exp_avg_sq_col as Tensor;
      row.mul_(beta2t).add_(update.mean(-1), 1.0 - beta2t);
      col.mul_(beta2t).add_(update.mean(-2), 1.0 - beta2t);
      // _approx_sq_grad: rsqrt(R / mean(R)) outer rsqrt(C)
      const rFactor = row.div(row.mean(-1, true)).rsqrt_().unsqueeze(-1);
      const cFactor = col.unsqueeze(-2).rsqrt();
      update = rFactor.mul(cFactor).mul_(grad);
    } else {
      const v = state.exp_avg_sq as Tensor;
      v.mul_(beta2t).add_(update, 1.0 - beta2t);
      update = v.rsqrt().mul_(grad);
    }
    update.div_(Adafactor.#rms(update).div(h.clipThreshold).clampMin_(1.0));
    update.mul_(lr);
    if (useFirstMoment) {
      const m = state.exp_avg as Tensor;
      m.mul_(h.beta1!).add_(update, 1 - h.beta1!);
      update = m;
    }
    if (h.weightDecay !== 0) {
      if (typeof lr === 'number') pFp32.add_(pFp32, -h.weightDecay * lr);
      else pFp32.add_(pFp32.mul(lr.mul(-h.weightDecay)));
    }
    pFp32.add_(update.neg());
    if (pFp32 !== p) p.copy_(pFp32);
  }
}
