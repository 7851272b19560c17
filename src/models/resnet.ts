// ResnetBlock2D, Downsample2D and Upsample2D of diffusers (models/resnet.py), with the attribute
// names that are their checkpoint keys. Only what SD1.x/2.x/XL UNets and VAEs use is built; other
// options of the reference (up/down inside the resnet, FIR kernels, scale-shift norm) are refused.
import * as torch from '../torch/index.js';

const { nn, F, tidy } = torch;

export interface ResnetOptions extends torch.nn.FactoryOptions {
  inChannels: number;
  outChannels?: number;
  /** null: no time embedding (VAE blocks). */
  tembChannels: number | null;
  groups: number;
  eps: number;
  outputScaleFactor?: number;
  dropout?: number;
}

/**
 * h = conv1(silu(norm1(x))) + time_emb_proj(silu(temb)); h = conv2(dropout(silu(norm2(h))));
 * out = (shortcut(x) + h) / output_scale_factor
 */
export class ResnetBlock2D extends nn.Module {
  readonly norm1: torch.nn.GroupNorm;
  readonly conv1: torch.nn.Conv2d;
  readonly time_emb_proj: torch.nn.Linear | null;
  readonly norm2: torch.nn.GroupNorm;
  readonly dropout: torch.nn.Dropout;
  readonly conv2: torch.nn.Conv2d;
  readonly conv_shortcut: torch.nn.Conv2d | null;
  readonly outputScaleFactor: number;

  constructor(o: ResnetOptions) {
    super();
    const out = o.outChannels ?? o.inChannels;
    const f = { dtype: o.dtype, device: o.device };
    this.norm1 = this.registerModule('norm1', new nn.GroupNorm(o.groups, o.inChannels, o.eps, true, f));
    this.conv1 = this.registerModule('conv1', new nn.Conv2d(o.inChannels, out, 3, { padding: 1, ...f }));
    this.time_emb_proj = o.tembChannels === null ? null : this.registerModule('time_emb_proj', new nn.Linear(o.tembChannels, out, f));
    this.norm2 = this.registerModule('norm2', new nn.GroupNorm(o.groups, out, o.eps, true, f));
    this.dropout = this.registerModule('dropout', new nn.Dropout(o.dropout ?? 0));
    this.conv2 = this.registerModule('conv2', new nn.Conv2d(out, out, 3, { padding: 1, ...f }));
    this.conv_shortcut = o.inChannels !== out ? this.registerModule('conv_shortcut', new nn.Conv2d(o.inChannels, out, 1, f)) : null;
    this.outputScaleFactor = o.outputScaleFactor ?? 1.0;
  }

  forward(input: torch.Tensor, temb: torch.Tensor | null): torch.Tensor {
    return tidy(() => {
      let h = this.conv1.forward(F.silu(this.norm1.forward(input)));
      if (this.time_emb_proj && temb) {
        const t = this.time_emb_proj.forward(F.silu(temb)); // [B, C]
        h = h.add(t.unsqueeze(-1).unsqueeze(-1));
      }
      h = this.conv2.forward(this.dropout.forward(F.silu(this.norm2.forward(h))));
      const shortcut = this.conv_shortcut ? this.conv_shortcut.forward(input) : input;
      const out = shortcut.add(h);
      return this.outputScaleFactor === 1 ? out : out.div(this.outputScaleFactor);
    });
  }
}

/** A stride-2 3x3 conv; with padding 0 the input is first padded on the right and bottom (the VAE's). */
export class Downsample2D extends nn.Module {
  readonly conv: torch.nn.Conv2d;
  constructor(channels: number, outChannels: number, readonly padding: number, o: torch.nn.FactoryOptions = {}) {
    super();
    this.conv = this.registerModule('conv', new nn.Conv2d(channels, outChannels, 3, { stride: 2, padding, ...o }));
  }
  forward(x: torch.Tensor): torch.Tensor {
    return tidy(() => this.conv.forward(this.padding === 0 ? F.pad(x, [0, 1, 0, 1], 'constant', 0) : x));
  }
}

/** Nearest-neighbour x2 (or to `outputSize`) then a 3x3 conv. bfloat16 is upsampled in float32, as diffusers does. */
export class Upsample2D extends nn.Module {
  readonly conv: torch.nn.Conv2d;
  constructor(channels: number, outChannels: number, o: torch.nn.FactoryOptions = {}) {
    super();
    this.conv = this.registerModule('conv', new nn.Conv2d(channels, outChannels, 3, { padding: 1, ...o }));
  }
  forward(x: torch.Tensor, outputSize?: [number, number]): torch.Tensor {
    return tidy(() => {
      const dtype = x.dtype;
      let h = dtype === 'bfloat16' ? x.float() : x;
      if (h.shape[0]! >= 64) h = h.contiguous();
      h = outputSize ? F.interpolate(h, { size: outputSize, mode: 'nearest' }) : F.interpolate(h, { scaleFactor: 2.0, mode: 'nearest' });
      if (dtype === 'bfloat16') h = h.to('bfloat16');
      return this.conv.forward(h);
    });
  }
}
