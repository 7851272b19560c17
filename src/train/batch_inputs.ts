// A loader batch as the step's inputs on the training device. Cached encodings (a latent cache's
// posterior parameters and text conditioning) are copied as they are. The uint8 pixels and the token ids
// are copied without making the host wait (pinned staging, non-blocking copies on CUDA), and the
// pixels are scaled to [-1, 1] there with torchvision's arithmetic, (x / 255 - 0.5) / 0.5 in
// float32, bit-identical to the host computation (normalizePixels):
// - x / 255 is computed in float64 and rounded to float32. Double rounding is harmless for a
//   quotient (53 >= 2 x 24 + 2 bits), and CUDA's multiply-by-reciprocal for a scalar divisor stays
//   within a double ulp, far from any float32 rounding midpoint for x / 255 with integer x;
// - - 0.5 and / 0.5 are exact or correctly rounded in float32 on every device.
import * as torch from '../torch/index.js';
import type { Batch } from '../data/loader.js';
import type { StepBatch } from './step.js';

/** uint8 pixels (any shape) -> float32 in [-1, 1], on their device. */
export function normalizePixelsOnDevice(u8: torch.Tensor): torch.Tensor {
  return torch.tidy(() => u8.to({ dtype: 'float64' }).div(255).float().sub(0.5).div(0.5));
}

/** Host bytes as a tensor on `device` (non-blocking on CUDA). */
function hostToDevice(h: torch.HostTensor, device: torch.Device): torch.Tensor {
  return torch.toDeviceNonBlocking(torch.fromBytes(h.data, h.dtype, h.shape), device);
}

export function batchToDevice(batch: Batch, device: torch.Device): StepBatch {
  return torch.tidy(() => {
    const e = batch.encoded;
    if (e) {
      return {
        latentMoments: hostToDevice(e.moments, device), encoderHiddenStates: hostToDevice(e.text, device),
        pooledPromptEmbeds: e.pooled ? hostToDevice(e.pooled, device) : undefined, captions: batch.captions,
      };
    }
    if (!batch.pixels) throw new Error('a batch holds pixels or cached encodings');
    const host = torch.fromTypedArray(batch.pixels, [...batch.shape]);
    const out: StepBatch = { pixelValues: normalizePixelsOnDevice(torch.toDeviceNonBlocking(host, device)), captions: batch.captions };
    if (batch.labels) out.labels = batch.labels;
    if (batch.inputIds) out.inputIds = torch.toDeviceNonBlocking(torch.tensor(batch.inputIds, { dtype: 'int64' }), device);
    return out;
  });
}
