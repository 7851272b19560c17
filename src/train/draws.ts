// The random draws of a training step: the latent sample from the VAE posterior, the noise (and
// its offset and perturbation) and the timesteps. By default they come from the device's default
// generator over the whole batch, in train.py's order (step.ts draws them so, in memory order as
// randn_like does), so a seeded run reproduces the reference's. With --sample_seeds each pair (SFT: each image) draws from its own generator seeded by (seed,
// epoch, row): the numbers no longer depend on which process, micro-step or batch a pair lands
// in, so 2 processes x batch b train exactly as 1 x 2b does (up to float summation order).
import * as torch from '../torch/index.js';
import { hash32 } from '../data/rng.js';

export interface StepDraws {
  /** N(0, 1) of shape [rows, ...perRow], rows in the batch's order. */
  randn(perRow: number[], dtype?: torch.DType): torch.Tensor;
  /** Integers in [0, high), one per row. */
  randint(high: number): torch.Tensor;
}

/** The seed of one sample's generator (64 bits from the run's seed, the epoch and the dataset row). */
export function sampleSeed(seed: number, epoch: number, row: number): bigint {
  return (BigInt(hash32(seed, epoch, row, 1)) << 32n) | BigInt(hash32(seed, epoch, row, 2));
}

/**
 * One generator per sample. `rowsPerSample` 2 for DPO, whose batch holds the preferred images of
 * every pair, then the dispreferred ones: pair i's generator draws its row i, then its row n + i.
 */
export function perSampleDraws(seeds: readonly bigint[], rowsPerSample: 1 | 2, device: torch.Device): StepDraws {
  const gens = seeds.map((s) => new torch.Generator(device, s));
  const arrange = (parts: torch.Tensor[]): torch.Tensor => {
    if (rowsPerSample === 1) return torch.cat(parts, 0);
    return torch.cat([...parts.map((p) => p.narrow(0, 0, 1)), ...parts.map((p) => p.narrow(0, 1, 1))], 0);
  };
  return {
    randn: (perRow, dtype) => arrange(gens.map((generator) => torch.randn([rowsPerSample, ...perRow], { generator, device, dtype }))),
    randint: (high) => arrange(gens.map((generator) => torch.randint(0, high, [rowsPerSample], { generator, device }))),
  };
}
