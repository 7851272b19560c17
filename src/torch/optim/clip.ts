// torch.nn.utils.clip_grad_norm_: the global norm over all gradients, then every gradient scaled
// by min(1, max_norm / (norm + 1e-6)). The scale is applied as a tensor, so there is no host
// sync; the returned norm is a 0-d tensor (call .item() only when logging).
import { noGrad } from '../autograd.js';
import { stack } from '../creation.js';
import { native } from '../native.js';
import { OP } from '../ops.js';
import { tidy } from '../scope.js';
import { type Tensor, wrap } from '../tensor.js';
import { groupByDeviceAndDtype } from './optimizer.js';

export function clipGradNorm_(params: Tensor[], maxNorm: number, o: { normType?: number; errorIfNonfinite?: boolean } = {}): Tensor {
  const normType = o.normType ?? 2;
  return tidy(() => noGrad(() => {
    const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
    if (grads.length === 0) return wrap(native.callOp(OP.zeros, [], null, null, null, null));
    const groups = groupByDeviceAndDtype(grads.map((_, i) => i), grads);
    const firstDevice = grads[0]!.device;
    const norms: Tensor[] = [];
    for (const ids of groups) {
      const hs = native.callOp(OP['_foreach_norm.Scalar'], ids.map((i) => grads[i]!._h), normType, null) as number[];
      for (const h of hs) norms.push(wrap(h).to(firstDevice));
    }
    const total = stack(norms).norm(normType);
    if (o.errorIfNonfinite && !Number.isFinite(total.item())) {
      throw new Error(`the total norm of order ${normType} for gradients is non-finite, so it cannot be clipped`);
    }
    // an infinite max norm only measures: no multiply (0 x inf would turn an overflowed norm into NaN gradients)
    if (!Number.isFinite(maxNorm)) return total;
    const coef = total.add(1e-6).reciprocal().mul(maxNorm).clampMax(1.0);
    for (const ids of groups) {
      const device = grads[ids[0]!]!.device;
      const c = coef.to(device);
      native.callOp(OP['_foreach_mul_.Tensor'], ids.map((i) => grads[i]!._h), c._h);
    }
    return total;
  }));
}
