// AutoencoderKL of diffusers 0.20 (models/autoencoder_kl.py, vae.py): encoder -> quant_conv ->
// diagonal Gaussian over latents; post_quant_conv -> decoder. Attribute names are checkpoint keys;
// old checkpoints' mid-block attention names (query/key/value/proj_attn) are renamed on load.
import * as torch from '../torch/index.js';
import { ConfigError, get, requireValue, type RawConfig } from './config.js';
import { DownBlock2D, MidBlock2D, UpDecoderBlock2D } from './unet_blocks.js';

const { nn, F, tidy } = torch;
const MODEL = 'AutoencoderKL';

export interface VAEConfig {
  inChannels: number;
  outChannels: number;
  blockOutChannels: number[];
  layersPerBlock: number;
  latentChannels: number;
  normNumGroups: number;
  sampleSize: number;
  scalingFactor: number;
  /** The VAE must run in float32 even when the pipeline runs in float16 (SDXL's VAE). */
  forceUpcast: boolean;
  raw: RawConfig;
}

export function parseVAEConfig(raw: RawConfig): VAEConfig {
  requireValue(MODEL, raw, 'act_fn', ['silu']);
  const down = get<string[]>(raw, 'down_block_types', ['DownEncoderBlock2D']);
  const up = get<string[]>(raw, 'up_block_types', ['UpDecoderBlock2D']);
  for (const t of down) if (t !== 'DownEncoderBlock2D') throw new ConfigError(MODEL, `unknown down block type '${t}' (supported: DownEncoderBlock2D)`);
  for (const t of up) if (t !== 'UpDecoderBlock2D') throw new ConfigError(MODEL, `unknown up block type '${t}' (supported: UpDecoderBlock2D)`);
  const blockOutChannels = get<number[]>(raw, 'block_out_channels', [64]);
  if (down.length !== blockOutChannels.length || up.length !== blockOutChannels.length) {
    throw new ConfigError(MODEL, 'down_block_types, up_block_types and block_out_channels must have the same length');
  }
  return {
    inChannels: get(raw, 'in_channels', 3),
    outChannels: get(raw, 'out_channels', 3),
    blockOutChannels,
    layersPerBlock: get(raw, 'layers_per_block', 1),
    latentChannels: get(raw, 'latent_channels', 4),
    normNumGroups: get(raw, 'norm_num_groups', 32),
    sampleSize: get(raw, 'sample_size', 32),
    scalingFactor: get(raw, 'scaling_factor', 0.18215),
    forceUpcast: get(raw, 'force_upcast', true),
    raw,
  };
}

/** The posterior q(z|x) = N(mean, exp(logvar)), logvar clamped to [-30, 20] as diffusers does. */
export class DiagonalGaussianDistribution {
  readonly mean: torch.Tensor;
  readonly logvar: torch.Tensor;
  readonly std: torch.Tensor;
  readonly var: torch.Tensor;
  constructor(readonly parameters: torch.Tensor) {
    const [mean, logvar] = parameters.chunk(2, 1);
    this.mean = mean!;
    this.logvar = logvar!.clamp(-30.0, 20.0);
    this.std = this.logvar.mul(0.5).exp();
    this.var = this.logvar.exp();
  }
  /** mean + std * eps with eps ~ N(0, I) drawn like diffusers' randn_tensor (the generator's device or the CPU). */
  sample(generator?: torch.Generator): torch.Tensor {
    return tidy(() => {
      const eps = torch.randn(this.mean.shape, { generator, dtype: this.mean.dtype, device: generator?.device ?? this.mean.device });
      return this.mean.add(this.std.mul(eps.to(this.mean.device)));
    });
  }
  mode(): torch.Tensor {
    return this.mean.clone();
  }
}

class Encoder extends nn.Module {
  readonly conv_in: torch.nn.Conv2d;
  readonly down_blocks: torch.nn.ModuleList<DownBlock2D>;
  readonly mid_block: MidBlock2D;
  readonly conv_norm_out: torch.nn.GroupNorm;
  readonly conv_out: torch.nn.Conv2d;
  constructor(c: VAEConfig, f: torch.nn.FactoryOptions) {
    super();
    const boc = c.blockOutChannels;
    const base = { tembChannels: null, eps: 1e-6, groups: c.normNumGroups, ...f };
    this.conv_in = this.registerModule('conv_in', new nn.Conv2d(c.inChannels, boc[0]!, 3, { padding: 1, ...f }));
    this.down_blocks = this.registerModule('down_blocks', new nn.ModuleList(boc.map((out, i) => new DownBlock2D({
      ...base, numLayers: c.layersPerBlock, inChannels: i === 0 ? boc[0]! : boc[i - 1]!, outChannels: out,
      addDownsample: i < boc.length - 1, downsamplePadding: 0,
    }))));
    this.mid_block = this.registerModule('mid_block', new MidBlock2D({ ...base, inChannels: boc[boc.length - 1]! }));
    this.conv_norm_out = this.registerModule('conv_norm_out', new nn.GroupNorm(c.normNumGroups, boc[boc.length - 1]!, 1e-6, true, f));
    this.conv_out = this.registerModule('conv_out', new nn.Conv2d(boc[boc.length - 1]!, 2 * c.latentChannels, 3, { padding: 1, ...f }));
  }
  forward(x: torch.Tensor): torch.Tensor {
    return tidy(() => {
      let h = this.conv_in.forward(x);
      for (const b of this.down_blocks) h = b.forward(h, null).hidden;
      h = this.mid_block.forward(h, null);
      return this.conv_out.forward(F.silu(this.conv_norm_out.forward(h)));
    });
  }
}

class Decoder extends nn.Module {
  readonly conv_in: torch.nn.Conv2d;
  readonly up_blocks: torch.nn.ModuleList<UpDecoderBlock2D>;
  readonly mid_block: MidBlock2D;
  readonly conv_norm_out: torch.nn.GroupNorm;
  readonly conv_out: torch.nn.Conv2d;
  constructor(c: VAEConfig, f: torch.nn.FactoryOptions) {
    super();
    const boc = c.blockOutChannels;
    const rev = [...boc].reverse();
    const base = { tembChannels: null, eps: 1e-6, groups: c.normNumGroups, ...f };
    this.conv_in = this.registerModule('conv_in', new nn.Conv2d(c.latentChannels, boc[boc.length - 1]!, 3, { padding: 1, ...f }));
    // up_blocks is registered before mid_block, as in diffusers' Decoder (state-dict order).
    this.up_blocks = this.registerModule('up_blocks', new nn.ModuleList(rev.map((out, i) => new UpDecoderBlock2D({
      ...base, numLayers: c.layersPerBlock + 1, inChannels: i === 0 ? rev[0]! : rev[i - 1]!, outChannels: out,
      addUpsample: i < boc.length - 1,
    }))));
    this.mid_block = this.registerModule('mid_block', new MidBlock2D({ ...base, inChannels: boc[boc.length - 1]! }));
    this.conv_norm_out = this.registerModule('conv_norm_out', new nn.GroupNorm(c.normNumGroups, boc[0]!, 1e-6, true, f));
    this.conv_out = this.registerModule('conv_out', new nn.Conv2d(boc[0]!, c.outChannels, 3, { padding: 1, ...f }));
  }
  forward(z: torch.Tensor): torch.Tensor {
    return tidy(() => {
      let h = this.conv_in.forward(z);
      const upDtype = this.up_blocks.at(0).resnets.at(0).conv1.weight.dtype;
      h = this.mid_block.forward(h, null).to(upDtype);
      for (const b of this.up_blocks) h = b.forward(h);
      return this.conv_out.forward(F.silu(this.conv_norm_out.forward(h)));
    });
  }
}

export class AutoencoderKL extends nn.Module {
  readonly config: VAEConfig;
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  readonly quant_conv: torch.nn.Conv2d;
  readonly post_quant_conv: torch.nn.Conv2d;

  constructor(config: VAEConfig | RawConfig, o: torch.nn.FactoryOptions = {}) {
    super();
    const c = 'raw' in config && 'blockOutChannels' in config ? (config as VAEConfig) : parseVAEConfig(config as RawConfig);
    this.config = c;
    const f = { dtype: o.dtype, device: o.device };
    this.encoder = this.registerModule('encoder', new Encoder(c, f));
    this.decoder = this.registerModule('decoder', new Decoder(c, f));
    this.quant_conv = this.registerModule('quant_conv', new nn.Conv2d(2 * c.latentChannels, 2 * c.latentChannels, 1, f));
    this.post_quant_conv = this.registerModule('post_quant_conv', new nn.Conv2d(c.latentChannels, c.latentChannels, 1, f));
  }

  /** Images in [-1, 1], [B, 3, H, W] -> the latent posterior (tensors owned by the current scope). */
  encode(x: torch.Tensor): DiagonalGaussianDistribution {
    const moments = tidy(() => this.quant_conv.forward(this.encoder.forward(x)));
    return new DiagonalGaussianDistribution(moments);
  }

  /** Unscaled latents (divide by scaling_factor first) -> images in about [-1, 1]. */
  decode(z: torch.Tensor): torch.Tensor {
    return tidy(() => this.decoder.forward(this.post_quant_conv.forward(z)));
  }
}

/** diffusers < 0.14 named the VAE mid-block attention's projections differently. */
export function renameLegacyVAEKeys(key: string): string {
  const m = key.match(/^((?:encoder|decoder)\.mid_block\.attentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias)$/);
  if (!m) return key;
  const to = { query: 'to_q', key: 'to_k', value: 'to_v', proj_attn: 'to_out.0' }[m[2] as 'query' | 'key' | 'value' | 'proj_attn'];
  return `${m[1]}.${to}.${m[3]}`;
}
