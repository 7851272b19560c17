// Attention, the GEGLU feed-forward, BasicTransformerBlock and Transformer2DModel of diffusers
// 0.20 (models/attention_processor.py, attention.py, transformer_2d.py), continuous-input form.
// Attention runs on libtorch's scaled_dot_product_attention, which computes the same function as
// diffusers' AttnProcessor2_0 (softmax(q k^T / sqrt(d)) v).
import * as torch from '../torch/index.js';

const { nn, F, tidy } = torch;

export interface AttentionOptions extends torch.nn.FactoryOptions {
  queryDim: number;
  /** Defaults to queryDim (self-attention). */
  crossAttentionDim?: number | null;
  heads: number;
  dimHead: number;
  /** Bias on to_q/to_k/to_v (UNet: false; VAE mid-block: true). */
  bias?: boolean;
  /** Compute q k^T and softmax in float32 for half-precision inputs (SD 2.x). */
  upcastAttention?: boolean;
  /** GroupNorm before attention over image tokens (VAE mid-block). */
  normNumGroups?: number | null;
  eps?: number;
  residualConnection?: boolean;
  rescaleOutputFactor?: number;
}

export class Attention extends nn.Module {
  readonly group_norm: torch.nn.GroupNorm | null;
  readonly to_q: torch.nn.Linear;
  readonly to_k: torch.nn.Linear;
  readonly to_v: torch.nn.Linear;
  readonly to_out: torch.nn.ModuleList<torch.nn.UnaryModule>;
  readonly heads: number;
  readonly upcast: boolean;
  readonly residual: boolean;
  readonly rescale: number;

  constructor(o: AttentionOptions) {
    super();
    const f = { dtype: o.dtype, device: o.device };
    const inner = o.heads * o.dimHead;
    const crossDim = o.crossAttentionDim ?? o.queryDim;
    this.heads = o.heads;
    this.upcast = o.upcastAttention ?? false;
    this.residual = o.residualConnection ?? false;
    this.rescale = o.rescaleOutputFactor ?? 1.0;
    this.group_norm = o.normNumGroups ? this.registerModule('group_norm', new nn.GroupNorm(o.normNumGroups, o.queryDim, o.eps ?? 1e-5, true, f)) : null;
    this.to_q = this.registerModule('to_q', new nn.Linear(o.queryDim, inner, { bias: o.bias ?? false, ...f }));
    this.to_k = this.registerModule('to_k', new nn.Linear(crossDim, inner, { bias: o.bias ?? false, ...f }));
    this.to_v = this.registerModule('to_v', new nn.Linear(crossDim, inner, { bias: o.bias ?? false, ...f }));
    this.to_out = this.registerModule('to_out', new nn.ModuleList<torch.nn.UnaryModule>([new nn.Linear(inner, o.queryDim, f), new nn.Dropout(0)]));
  }

  /** hiddenStates: [B, L, C] tokens, or [B, C, H, W] (VAE) which is attended over H*W and restored. */
  forward(hiddenStates: torch.Tensor, encoderHiddenStates?: torch.Tensor | null): torch.Tensor {
    return tidy(() => {
      const residual = hiddenStates;
      const image = hiddenStates.ndim === 4;
      const [b, c, hgt, wid] = hiddenStates.shape as [number, number, number, number];
      let x = image ? hiddenStates.view(b, c, hgt * wid).transpose(1, 2) : hiddenStates; // (B, L, C)
      if (this.group_norm) x = this.group_norm.forward(x.transpose(1, 2)).transpose(1, 2);
      const context = encoderHiddenStates ?? x;
      const heads = this.heads;
      const split = (t: torch.Tensor) => t.view(t.shape[0]!, -1, heads, t.shape[2]! / heads).transpose(1, 2); // (B, nh, L, hd)
      const q = split(this.to_q.forward(x));
      const k = split(this.to_k.forward(context));
      const v = split(this.to_v.forward(context));
      const dtype = q.dtype;
      const upcast = this.upcast && (dtype === 'float16' || dtype === 'bfloat16');
      let out: torch.Tensor;
      if (upcast) {
        // attention in float32 (SD 2.x needs it in fp16). SDPA is on autocast's low-precision list,
        // which would cast the float32 q/k/v straight back: run it with autocast off.
        out = torch.autocast({ device: q.device, enabled: false }, () => F.scaledDotProductAttention(q.float(), k.float(), v.float())).to(dtype);
      } else {
        out = F.scaledDotProductAttention(q, k, v); // (B, nh, L, hd)
      }
      out = out.transpose(1, 2).reshape(out.shape[0]!, -1, heads * out.shape[3]!); // (B, L, nh*hd)
      out = this.to_out.at(1).forward(this.to_out.at(0).forward(out));
      if (image) out = out.transpose(-1, -2).reshape(b, c, hgt, wid);
      if (this.residual) out = out.add(residual);
      return this.rescale === 1 ? out : out.div(this.rescale);
    });
  }
}

/** GEGLU: proj to 2x width, split, value * gelu(gate). */
export class GEGLU extends nn.Module implements torch.nn.UnaryModule {
  readonly proj: torch.nn.Linear;
  constructor(dimIn: number, dimOut: number, o: torch.nn.FactoryOptions = {}) {
    super();
    this.proj = this.registerModule('proj', new nn.Linear(dimIn, dimOut * 2, o));
  }
  forward(x: torch.Tensor): torch.Tensor {
    return tidy(() => {
      const [hidden, gate] = this.proj.forward(x).chunk(2, -1);
      return hidden!.mul(F.gelu(gate!));
    });
  }
}

/** FeedForward(dim, mult=4, activation 'geglu'): net = [GEGLU, Dropout, Linear]. */
export class FeedForward extends nn.Module implements torch.nn.UnaryModule {
  readonly net: torch.nn.Sequential;
  constructor(dim: number, o: torch.nn.FactoryOptions & { mult?: number } = {}) {
    super();
    const inner = Math.trunc(dim * (o.mult ?? 4));
    const f = { dtype: o.dtype, device: o.device };
    this.net = this.registerModule('net', new nn.Sequential(new GEGLU(dim, inner, f), new nn.Dropout(0), new nn.Linear(inner, dim, f)));
  }
  forward(x: torch.Tensor): torch.Tensor {
    return this.net.forward(x);
  }
}

export interface TransformerBlockOptions extends torch.nn.FactoryOptions {
  dim: number;
  heads: number;
  dimHead: number;
  crossAttentionDim: number | null;
  onlyCrossAttention?: boolean;
  upcastAttention?: boolean;
}

/** Pre-norm self-attention, cross-attention and feed-forward, each with a residual. */
export class BasicTransformerBlock extends nn.Module {
  readonly norm1: torch.nn.LayerNorm;
  readonly attn1: Attention;
  readonly norm2: torch.nn.LayerNorm | null;
  readonly attn2: Attention | null;
  readonly norm3: torch.nn.LayerNorm;
  readonly ff: FeedForward;
  readonly onlyCross: boolean;

  constructor(o: TransformerBlockOptions) {
    super();
    const f = { dtype: o.dtype, device: o.device };
    this.onlyCross = o.onlyCrossAttention ?? false;
    const attn = (crossAttentionDim: number | null) => new Attention({
      queryDim: o.dim, heads: o.heads, dimHead: o.dimHead, crossAttentionDim, upcastAttention: o.upcastAttention, ...f,
    });
    this.norm1 = this.registerModule('norm1', new nn.LayerNorm(o.dim, 1e-5, f));
    this.attn1 = this.registerModule('attn1', attn(this.onlyCross ? o.crossAttentionDim : null));
    this.norm2 = o.crossAttentionDim !== null ? this.registerModule('norm2', new nn.LayerNorm(o.dim, 1e-5, f)) : null;
    this.attn2 = o.crossAttentionDim !== null ? this.registerModule('attn2', attn(o.crossAttentionDim)) : null;
    this.norm3 = this.registerModule('norm3', new nn.LayerNorm(o.dim, 1e-5, f));
    this.ff = this.registerModule('ff', new FeedForward(o.dim, f));
  }

  forward(hiddenStates: torch.Tensor, encoderHiddenStates: torch.Tensor | null): torch.Tensor {
    return tidy(() => {
      let h = this.attn1.forward(this.norm1.forward(hiddenStates), this.onlyCross ? encoderHiddenStates : null).add(hiddenStates);
      if (this.attn2 && this.norm2) h = this.attn2.forward(this.norm2.forward(h), encoderHiddenStates).add(h);
      return this.ff.forward(this.norm3.forward(h)).add(h);
    });
  }
}

export interface Transformer2DOptions extends torch.nn.FactoryOptions {
  heads: number;
  dimHead: number;
  inChannels: number;
  numLayers: number;
  crossAttentionDim: number | null;
  normNumGroups: number;
  useLinearProjection: boolean;
  onlyCrossAttention?: boolean;
  upcastAttention?: boolean;
}

/** GroupNorm, project in (1x1 conv or linear), transformer blocks over H*W tokens, project out, residual. */
export class Transformer2DModel extends nn.Module {
  readonly norm: torch.nn.GroupNorm;
  readonly proj_in: torch.nn.Linear | torch.nn.Conv2d;
  readonly transformer_blocks: torch.nn.ModuleList<BasicTransformerBlock>;
  readonly proj_out: torch.nn.Linear | torch.nn.Conv2d;
  readonly linear: boolean;

  constructor(o: Transformer2DOptions) {
    super();
    const f = { dtype: o.dtype, device: o.device };
    const inner = o.heads * o.dimHead;
    this.linear = o.useLinearProjection;
    this.norm = this.registerModule('norm', new nn.GroupNorm(o.normNumGroups, o.inChannels, 1e-6, true, f));
    this.proj_in = this.registerModule('proj_in', this.linear ? new nn.Linear(o.inChannels, inner, f) : new nn.Conv2d(o.inChannels, inner, 1, f));
    this.transformer_blocks = this.registerModule('transformer_blocks', new nn.ModuleList(Array.from({ length: o.numLayers }, () => new BasicTransformerBlock({
      dim: inner, heads: o.heads, dimHead: o.dimHead, crossAttentionDim: o.crossAttentionDim,
      onlyCrossAttention: o.onlyCrossAttention, upcastAttention: o.upcastAttention, ...f,
    }))));
    this.proj_out = this.registerModule('proj_out', this.linear ? new nn.Linear(inner, o.inChannels, f) : new nn.Conv2d(inner, o.inChannels, 1, f));
  }

  forward(hiddenStates: torch.Tensor, encoderHiddenStates: torch.Tensor | null): torch.Tensor {
    return tidy(() => {
      const [b, , hgt, wid] = hiddenStates.shape as [number, number, number, number];
      let h = this.norm.forward(hiddenStates);
      let inner: number;
      if (!this.linear) {
        h = this.proj_in.forward(h);
        inner = h.shape[1]!;
        h = h.permute(0, 2, 3, 1).reshape(b, hgt * wid, inner); // (B, HW, C)
      } else {
        inner = h.shape[1]!;
        h = this.proj_in.forward(h.permute(0, 2, 3, 1).reshape(b, hgt * wid, inner));
        inner = h.shape[2]!;
      }
      for (const block of this.transformer_blocks) h = block.forward(h, encoderHiddenStates);
      if (!this.linear) {
        h = this.proj_out.forward(h.reshape(b, hgt, wid, inner).permute(0, 3, 1, 2).contiguous());
      } else {
        h = this.proj_out.forward(h).reshape(b, hgt, wid, -1).permute(0, 3, 1, 2).contiguous();
      }
      return h.add(hiddenStates);
    });
  }
}
