// torch.amp.GradScaler: dynamic loss scaling for float16 training. The loss is multiplied by a
// scale before backward; before the optimizer step the gradients are unscaled and checked for
// inf/NaN in one fused kernel per device and dtype; a step with non-finite gradients is skipped and
// the scale backs off, and after `growthInterval` clean steps it grows. Same kernels and defaults
// as PyTorch (_amp_foreach_non_finite_check_and_unscale_, _amp_update_scale_).
import { noGrad } from '../autograd.js';
import { full, zeros } from '../creation.js';
import type { Device } from '../device.js';
import { native } from '../native.js';
import { OP } from '../ops.js';
import { groupByDeviceAndDtype, type Optimizer } from '../optim/optimizer.js';
import { keep, tidy } from '../scope.js';
import type { Tensor } from '../tensor.js';

export interface GradScalerOptions {
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  growthInterval?: number;
  /** Disabled, every method is a pass-through (as with PyTorch's enabled=False). */
  enabled?: boolean;
}

export interface GradScalerState {
  scale: number;
  growthFactor: number;
  backoffFactor: number;
  growthInterval: number;
  growthTracker: number;
}

type AnyOptimizer = Optimizer<{ lr: number }>;

export class GradScaler {
  readonly enabled: boolean;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  #scale: Tensor;
  #growthTracker: Tensor;
  /** Per optimizer since the last update(): the found-inf flag of its unscale_. */
  #unscaled = new Map<AnyOptimizer, Tensor>();

  constructor(readonly device: Device = 'cuda', o: GradScalerOptions = {}) {
    this.enabled = o.enabled ?? true;
    this.growthFactor = o.growthFactor ?? 2.0;
    this.backoffFactor = o.backoffFactor ?? 0.5;
    this.growthInterval = o.growthInterval ?? 2000;
    if (!(this.growthFactor > 1)) throw new RangeError('growthFactor should be > 1');
    if (!(this.backoffFactor < 1)) throw new RangeError('backoffFactor should be < 1');
    this.#scale = keep(full([1], o.initScale ?? 65536.0, { dtype: 'float32', device }));
    this.#growthTracker = keep(zeros([1], { dtype: 'int32', device }));
  }

  /** loss * scale (a new tensor in the current scope); the loss itself when disabled. */
  scale(loss: Tensor): Tensor {
    if (!this.enabled) return loss;
    return loss.mul(this.#scale.to(loss.device));
  }

  /** Divides the gradients of the optimizer's parameters by the scale, recording non-finite ones. */
  unscale_(optimizer: AnyOptimizer): void {
    if (!this.enabled) return;
    if (this.#unscaled.has(optimizer)) throw new Error('unscale_() has already been called on this optimizer since the last update().');
    const foundInf = tidy(() => noGrad(() => {
      // 1/scale computed in float64, as PyTorch does, then used as float32.
      const invScale = this.#scale.double().reciprocal().float();
      const found = zeros([1], { dtype: 'float32', device: this.device });
      const grads: Tensor[] = [];
      for (const g of optimizer.paramGroups) for (const p of g.params) {
        const grad = p.grad;
        if (grad) grads.push(grad);
      }
      for (const ids of groupByDeviceAndDtype(grads.map((_, i) => i), grads)) {
        const device = grads[ids[0]!]!.device;
        const f = device === this.device ? found : zeros([1], { dtype: 'float32', device });
        native.callOp(OP._amp_foreach_non_finite_check_and_unscale_, ids.map((i) => grads[i]!._h), f._h, invScale.to(device)._h);
        if (f !== found) found.add_(f.to(this.device));
      }
      return found;
    }));
    this.#unscaled.set(optimizer, keep(foundInf));
  }

  /**
   * Unscales (unless unscale_ was called) and steps the optimizer unless a gradient was inf/NaN.
   * Returns whether it stepped. This reads one number from the device (a sync point).
   */
  step(optimizer: AnyOptimizer): boolean {
    if (!this.enabled) {
      optimizer.step();
      return true;
    }
    if (!this.#unscaled.has(optimizer)) this.unscale_(optimizer);
    const skipped = this.#unscaled.get(optimizer)!.item() !== 0;
    if (!skipped) optimizer.step();
    return !skipped;
  }

  /** Backs off after a skipped step, grows after growthInterval good ones (libtorch's kernel). */
  update(newScale?: number): void {
    if (!this.enabled) return;
    tidy(() => {
      if (newScale !== undefined) {
        this.#scale.fill_(newScale);
        return;
      }
      const flags = [...this.#unscaled.values()];
      if (flags.length === 0) throw new Error('No inf checks were recorded prior to update(): call step() or unscale_() first.');
      let found = flags[0]!;
      for (const f of flags.slice(1)) found = found.add(f);
      native.callOp(OP._amp_update_scale_, this.#scale._h, this.#growthTracker._h, found._h,
        this.growthFactor, this.backoffFactor, this.growthInterval);
    });
    for (const f of this.#unscaled.values()) f.dispose();
    this.#unscaled.clear();
  }

  getScale(): number {
    return this.enabled ? this.#scale.item() : 1.0;
  }

  stateDict(): GradScalerState {
    return {
      scale: this.getScale(), growthFactor: this.growthFactor, backoffFactor: this.backoffFactor,
      growthInterval: this.growthInterval, growthTracker: this.enabled ? this.#growthTracker.item() : 0,
    };
  }

  loadStateDict(s: GradScalerState): void {
    if (!this.enabled) return;
    this.#scale.fill_(s.scale);
    this.#growthTracker.fill_(s.growthTracker);
  }

  dispose(): void {
    this.#scale.dispose();
    this.#growthTracker.dispose();
    for (const f of this.#unscaled.values()) f.dispose();
    this.#unscaled.clear();
  }
}
