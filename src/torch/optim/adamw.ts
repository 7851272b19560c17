// AdamW with PyTorch's semantics (torch.optim.AdamW: decoupled weight decay, bias-corrected
// moments, eps added after the square root). The update runs on foreach kernels, one launch per
// step for all parameters of a device and dtype, or on libtorch's fused kernel with fused: true.
//
// Notation (Loshchilov & Hutter, Algorithm 2; PyTorch docs):
//   theta <- theta * (1 - lr * lambda)                 decoupled weight decay
//   m <- beta1 m + (1 - beta1) g                       (lerp)
//   v <- beta2 v + (1 - beta2) g^2
//   theta <- theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
import { noGrad } from '../autograd.js';
import { full, zerosLike, zeros } from '../creation.js';
import { native } from '../native.js';
import { OP } from '../ops.js';
import { keep, tidy } from '../scope.js';
import type { Tensor } from '../tensor.js';
import { groupByDeviceAndDtype, Optimizer, type OptimizerStateDict, type ParamState } from './optimizer.js';

const call = native.callOp;
const hs = (ts: Tensor[]) => ts.map((t) => t._h);

export interface AdamWOptions {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  /** libtorch's fused AdamW kernel (one kernel per step; CUDA and CPU). */
  fused: boolean;
}

export class AdamW extends Optimizer<AdamWOptions> {
  constructor(params: Tensor[] | ({ params: Tensor[] } & Partial<AdamWOptions>)[], o: Partial<AdamWOptions> & { amsgrad?: boolean; maximize?: boolean } = {}) {
    if (o.amsgrad) throw new Error('AdamW: amsgrad is not supported');
    if (o.maximize) throw new Error('AdamW: maximize is not supported');
    super('AdamW', params, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2, fused: false, ...o });
  }

  protected validate(h: AdamWOptions): void {
    if (!(h.lr >= 0)) throw new RangeError(`Invalid learning rate: ${h.lr}`);
    if (!(h.eps >= 0)) throw new RangeError(`Invalid epsilon value: ${h.eps}`);
    if (!(h.betas[0] >= 0 && h.betas[0] < 1)) throw new RangeError(`Invalid beta parameter at index 0: ${h.betas[0]}`);
    if (!(h.betas[1] >= 0 && h.betas[1] < 1)) throw new RangeError(`Invalid beta parameter at index 1: ${h.betas[1]}`);
    if (!(h.weightDecay >= 0)) throw new RangeError(`Invalid weight_decay value: ${h.weightDecay}`);
  }

  /**
   * Restores state and hyper-parameters, except `fused`: which kernel runs is this optimizer's
   * choice (its device's), so state saved by a fused run continues on foreach and vice versa.
   */
  override loadStateDict(sd: OptimizerStateDict): void {
    const fused = this.paramGroups.map((g) => g.hyper.fused);
    super.loadStateDict(sd);
    this.paramGroups.forEach((g, i) => (g.hyper.fused = fused[i]!));
  }

  step(): void {
    tidy(() => noGrad(() => {
      for (const group of this.paramGroups) {
        const withGrad: Tensor[] = [];
        const grads: Tensor[] = [];
        for (const p of group.params) {
          const g = p.grad;
          if (!g) continue;
          withGrad.push(p);
          grads.push(g);
        }
        const all = withGrad.map((_, i) => i);
        for (const ids of groupByDeviceAndDtype(all, withGrad)) {
          const params = ids.map((i) => withGrad[i]!);
          const gs = ids.map((i) => grads[i]!);
          if (group.hyper.fused) this.#fused(params, gs, group.hyper);
          else this.#foreach(params, gs, group.hyper);
        }
      }
    }));
  }

  #moments(params: Tensor[], fused: boolean): { expAvgs: Tensor[]; expAvgSqs: Tensor[]; states: ReturnType<AdamW['stateOf']>[] } {
    const states = params.map((p) => this.stateOf(p, () => ({
      step: fused ? zeros([], { dtype: 'float32', device: p.device }) : 0,
      exp_avg: zerosLike(p),
      exp_avg_sq: zerosLike(p),
    })));
    return { expAvgs: states.map((s) => s.exp_avg as Tensor), expAvgSqs: states.map((s) => s.exp_avg_sq as Tensor), states };
  }

  #foreach(params: Tensor[], grads: Tensor[], h: AdamWOptions): void {
    const { expAvgs, expAvgSqs, states } = this.#moments(params, false);
    const [beta1, beta2] = h.betas;
    const steps = states.map((s) => stepCount(s) + 1);
    states.forEach((s, i) => (s.step = steps[i]!));
    if (h.weightDecay !== 0) call(OP['_foreach_mul_.Scalar'], hs(params), 1 - h.lr * h.weightDecay);
    call(OP['_foreach_lerp_.Scalar'], hs(expAvgs), hs(grads), 1 - beta1);
    call(OP['_foreach_mul_.Scalar'], hs(expAvgSqs), beta2);
    call(OP['_foreach_addcmul_.Scalar'], hs(expAvgSqs), hs(grads), hs(grads), 1 - beta2);
    const stepSizes = steps.map((t) => -(h.lr / (1 - beta1 ** t)));
    const bc2Sqrt = steps.map((t) => Math.sqrt(1 - beta2 ** t));
    const denom = (call(OP._foreach_sqrt, hs(expAvgSqs)) as number[]);
    try {
      call(OP['_foreach_div_.ScalarList'], denom, bc2Sqrt);
      call(OP['_foreach_add_.Scalar'], denom, h.eps);
      call(OP['_foreach_addcdiv_.ScalarList'], hs(params), hs(expAvgs), denom, stepSizes);
    } finally {
      for (const d of denom) native.dispose(d);
    }
  }

  #fused(params: Tensor[], grads: Tensor[], h: AdamWOptions): void {
    const { expAvgs, expAvgSqs, states } = this.#moments(params, true);
    // state saved by a foreach run (or on another device) continues here: fused keeps the step on the device
    const stepTensors = states.map((s, i) => {
      if (typeof s.step !== 'number') return s.step;
      s.step = keep(full([], s.step, { dtype: 'float32', device: params[i]!.device }));
      return s.step;
    });
    call(OP['_foreach_add_.Scalar'], hs(stepTensors), 1);
    call(OP._fused_adamw_, hs(params), hs(grads), hs(expAvgs), hs(expAvgSqs), [], hs(stepTensors),
      h.lr, h.betas[0], h.betas[1], h.weightDecay, h.eps, false, false, null, null);
  }
}

/** The step count of a parameter's state, kept as a number (foreach) or as a device tensor (fused). */
function stepCount(s: ParamState): number {
  if (typeof s.step === 'number') return s.step;
  const n = s.step!.item() as number; // a fused run's state continuing on foreach: one read, once
  s.step!.dispose();
  return n;
}
