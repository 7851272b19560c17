// DDIM inversion (Song et al. 2021, eq. 12 run from x₀ towards noise; as InPO, Lu et al. 2025, uses it
// to noise training images): x₀ is carried to the noise level of each sample's timestep t along a
// per-sample grid τ_k = round(k·t/N), k = 0..N, with the model's own noise estimates, instead of
// being mixed with fresh Gaussian noise. Each step keeps the DDIM relation
//   x̂₀ = (x_τk − √(1−ᾱ_τk)·ε(x_τk, τk)) / √ᾱ_τk,   x_τk+1 = √ᾱ_τk+1·x̂₀ + √(1−ᾱ_τk+1)·ε(x_τk, τk)
// with τ₀ the clean image (ᾱ = 1, as diffusers' DDIMInverseScheduler with set_alpha_to_one). The
// noise the training target needs is then the one that makes x_t a forward-diffused x₀:
//   ε = (x_t − √ᾱ_t·x₀) / √(1−ᾱ_t).
// An optional η adds InPO's per-step noise, η·σ_k·z with σ_k² = (1−ᾱ_τk)/(1−ᾱ_τk+1)·(1−ᾱ_τk+1/ᾱ_τk)
// (DDPM's posterior variance between the two levels). ddimDenoise runs the same grid back (the
// deterministic DDIM sampler), which reconstructs x₀ from an η = 0 inversion up to the model's
// discretisation error. The arithmetic is float32 whatever the model's dtype.
import * as torch from '../torch/index.js';

/** The model's noise estimate for samples x at per-sample integer timesteps t ([B] int64). */
export type EpsilonPredictor = (x: torch.Tensor, t: torch.Tensor) => torch.Tensor;

function gridPoint(t: torch.Tensor, k: number, steps: number): torch.Tensor {
  return t.to({ dtype: 'float64' }).mul(k / steps).round().to({ dtype: 'int64' });
}

/** ᾱ at per-sample timesteps, shaped to broadcast over [B, C, H, W]; k = 0 is the clean image (1). */
function alphaAt(alphas: torch.Tensor, tau: torch.Tensor, clean: boolean, ndim: number): torch.Tensor {
  const a = clean ? torch.onesLike(tau, { dtype: 'float32' }) : alphas.indexSelect(0, tau);
  return a.reshape([tau.shape[0]!, ...new Array(ndim - 1).fill(1)]);
}

export interface InversionResult {
  /** x₀ carried to each sample's timestep. */
  noisy: torch.Tensor;
  /** The noise that forward-diffuses x₀ to `noisy` at t. */
  noise: torch.Tensor;
}

/**
 * Inverts x₀ ([B, C, H, W]) to the per-sample timesteps t in `steps` model calls. alphasCumprod:
 * float32 on x₀'s device. η > 0 draws from the default generator of x₀'s device.
 */
export function ddimInvert(predict: EpsilonPredictor, x0: torch.Tensor, t: torch.Tensor, alphasCumprod: torch.Tensor, o: { steps: number; eta?: number }): InversionResult {
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new RangeError(`inversion steps must be a positive integer, got ${o.steps}`);
  const eta = o.eta ?? 0;
  return torch.tidy(() => {
    const start = x0.float();
    const tt = t.to({ device: x0.device, dtype: 'int64' });
    let x = start;
    for (let k = 0; k < o.steps; k++) {
      const next = torch.tidy(() => {
        const tau = gridPoint(tt, k, o.steps);
        const eps = predict(x, tau).float();
        const a = alphaAt(alphasCumprod, tau, k === 0, x.ndim);
        const aNext = alphaAt(alphasCumprod, gridPoint(tt, k + 1, o.steps), false, x.ndim);
        const x0Hat = x.sub(a.rsub(1).sqrt().mul(eps)).div(a.sqrt());
        let out = aNext.sqrt().mul(x0Hat).add(aNext.rsub(1).sqrt().mul(eps));
        if (eta > 0) {
          const variance = a.rsub(1).div(aNext.rsub(1)).mul(aNext.div(a).rsub(1));
          out = out.add(variance.clamp(0, null).sqrt().mul(eta).mul(torch.randnLike(out)));
        }
        return out.keep();
      });
      if (x !== start) x.dispose();
      x = next;
    }
    const at = alphaAt(alphasCumprod, tt, false, x.ndim);
    const noise = x.sub(at.sqrt().mul(start)).div(at.rsub(1).sqrt());
    return { noisy: x, noise };
  });
}

/** The deterministic DDIM sampler over the same per-sample grid, from x_t back to x₀. */
export function ddimDenoise(predict: EpsilonPredictor, xt: torch.Tensor, t: torch.Tensor, alphasCumprod: torch.Tensor, o: { steps: number }): torch.Tensor {
  return torch.tidy(() => {
    const tt = t.to({ device: xt.device, dtype: 'int64' });
    const start = xt.float();
    let x = start;
    for (let k = o.steps; k >= 1; k--) {
      const prev = torch.tidy(() => {
        const tau = gridPoint(tt, k, o.steps);
        const eps = predict(x, tau).float();
        const a = alphaAt(alphasCumprod, tau, false, x.ndim);
        const aPrev = alphaAt(alphasCumprod, gridPoint(tt, k - 1, o.steps), k - 1 === 0, x.ndim);
        const x0Hat = x.sub(a.rsub(1).sqrt().mul(eps)).div(a.sqrt());
        return aPrev.sqrt().mul(x0Hat).add(aPrev.rsub(1).sqrt().mul(eps)).keep();
      });
      if (x !== start) x.dispose();
      x = prev;
    }
    return x;
  });
}
