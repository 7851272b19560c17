// Timestep embeddings of diffusers (models/embeddings.py): sinusoidal projection and the MLP.
import * as torch from '../torch/index.js';

const { nn, tidy } = torch;

/**
 * get_timestep_embedding: [N] timesteps -> [N, dim] sinusoids, as DDPM's.
 * freqs_k = exp(-ln(max_period) * k / (half - freq_shift)), emb = [sin(t f), cos(t f)] (flipped to [cos, sin] with flipSinToCos).
 */
export function timestepEmbedding(timesteps: torch.Tensor, dim: number, o: { flipSinToCos: boolean; freqShift: number; scale?: number; maxPeriod?: number }): torch.Tensor {
  if (timesteps.ndim !== 1) throw new RangeError('timesteps should be a 1-d tensor');
  return tidy(() => {
    const half = Math.floor(dim / 2);
    const exponent = torch.arange(0, half, 1, { dtype: 'float32', device: timesteps.device }).mul(-Math.log(o.maxPeriod ?? 10000)).div(half - o.freqShift);
    let emb = timesteps.unsqueeze(1).float().mul(exponent.exp().unsqueeze(0)); // [N, half]
    if (o.scale !== undefined && o.scale !== 1) emb = emb.mul(o.scale);
    emb = torch.cat([emb.sin(), emb.cos()], -1);
    if (o.flipSinToCos) emb = torch.cat([emb.slice(1, half), emb.slice(1, 0, half)], -1);
    if (dim % 2 === 1) emb = torch.F.pad(emb, [0, 1, 0, 0]);
    return emb;
  });
}

/** TimestepEmbedding: linear_1 -> SiLU -> linear_2 (the names are checkpoint keys). */
export class TimestepEmbedding extends nn.Module {
  readonly linear_1: torch.nn.Linear;
  readonly linear_2: torch.nn.Linear;
  constructor(inChannels: number, timeEmbedDim: number, o: torch.nn.FactoryOptions = {}) {
    super();
    this.linear_1 = this.registerModule('linear_1', new nn.Linear(inChannels, timeEmbedDim, o));
    this.linear_2 = this.registerModule('linear_2', new nn.Linear(timeEmbedDim, timeEmbedDim, o));
  }
  forward(sample: torch.Tensor): torch.Tensor {
    return tidy(() => this.linear_2.forward(torch.F.silu(this.linear_1.forward(sample))));
  }
}
