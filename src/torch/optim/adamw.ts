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
import { zerosLike, zeros } from '../creation.js';
import { native } from '../native.js';
import { OP } from '../ops.js';
import { tidy } from '../scope.js';
import type { Tensor } from '../tensor.js';
import { groupByDeviceAndDtype, Optimizer } from './optimizer.js';

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
    const steps = states.map((s) => (s.step as number) + 1);
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
    const stepTensors = states.map((s) => {
      if (typeof s.step === 'number') throw new Error('AdamW: state from a non-fused run cannot continue fused');
      return s.step;
    });
    call(OP['_foreach_add_.Scalar'], hs(stepTensors), 1);
    call(OP._fused_adamw_, hs(params), hs(grads), hs(expAvgs), hs(expAvgSqs), [], hs(stepTensors),
      h.lr, h.betas[0], h.betas[1], h.weightDecay, h.eps, false, false, null, null);
  }
}
