// The down, mid and up blocks of diffusers' UNets and VAEs (models/unet_2d_blocks.py). Attentions
// are registered before resnets, as upstream does, so state-dict keys come out in the same order.
import * as torch from '../torch/index.js';
import { Transformer2DModel } from './attention.js';
import { Attention } from './attention.js';
import { Downsample2D, ResnetBlock2D, Upsample2D } from './resnet.js';

const { nn, tidy } = torch;

export interface BlockOptions extends torch.nn.FactoryOptions {
  numLayers: number;
  inChannels: number;
  outChannels: number;
  tembChannels: number | null;
  eps: number;
  groups: number;
  outputScaleFactor?: number;
}

export interface CrossAttnOptions {
  transformerLayers: number;
  /** Number of attention heads (diffusers' num_attention_heads; head dim = channels / heads). */
  heads: number;
  crossAttentionDim: number;
  useLinearProjection: boolean;
  onlyCrossAttention?: boolean;
  upcastAttention?: boolean;
}

function transformer(channels: number, b: BlockOptions, x: CrossAttnOptions): Transformer2DModel {
  if (channels % x.heads !== 0) throw new RangeError(`${channels} channels cannot be split into ${x.heads} attention heads`);
  return new Transformer2DModel({
    heads: x.heads, dimHead: channels / x.heads, inChannels: channels, numLayers: x.transformerLayers,
    crossAttentionDim: x.crossAttentionDim, normNumGroups: b.groups, useLinearProjection: x.useLinearProjection,
    onlyCrossAttention: x.onlyCrossAttention, upcastAttention: x.upcastAttention, dtype: b.dtype, device: b.device,
  });
}

function resnet(b: BlockOptions, inChannels: number, outChannels: number): ResnetBlock2D {
  return new ResnetBlock2D({
    inChannels, outChannels, tembChannels: b.tembChannels, groups: b.groups, eps: b.eps,
    outputScaleFactor: b.outputScaleFactor, dtype: b.dtype, device: b.device,
  });
}

/**
 * Gradient checkpointing of a block: with it on (UNet2DConditionModel.enableGradientCheckpointing)
 * and the block training, each resnet and each whole Transformer2DModel is a checkpointed segment
 * whose activations backward recomputes. diffusers 0.20 checkpoints each resnet and each transformer
 * block inside a Transformer2DModel, and not the mid block's first resnet; our replay needs every
 * tensor made between segments to feed one segment (or be a segment's output), which that split
 * breaks (the mid block's first resnet output feeds two), so its GroupNorm and projections go into
 * the segment too. Gradients are the same, bit for bit; memory is within a few percent.
 */
interface Checkpointable {
  training: boolean;
  gradientCheckpointing: boolean;
}

function segment(block: Checkpointable, fn: (h: torch.Tensor, aux: torch.Tensor | null) => torch.Tensor, h: torch.Tensor, aux: torch.Tensor | null): torch.Tensor {
  if (!(block.training && block.gradientCheckpointing)) return fn(h, aux);
  return torch.checkpoint((x, a) => fn(x!, a), [h, aux]);
}

function resnetStep(block: Checkpointable, r: ResnetBlock2D, h: torch.Tensor, temb: torch.Tensor | null): torch.Tensor {
  return segment(block, (x, t) => r.forward(x, t), h, temb);
}

function attentionStep(block: Checkpointable, a: Transformer2DModel, h: torch.Tensor, encoderHiddenStates: torch.Tensor | null): torch.Tensor {
  return segment(block, (x, e) => a.forward(x, e), h, encoderHiddenStates);
}

export interface DownBlock {
  forward(h: torch.Tensor, temb: torch.Tensor | null, encoderHiddenStates: torch.Tensor | null): { hidden: torch.Tensor; residuals: torch.Tensor[] };
}
export interface UpBlock {
  readonly resnets: torch.nn.ModuleList<ResnetBlock2D>;
  forward(h: torch.Tensor, residuals: torch.Tensor[], temb: torch.Tensor | null, encoderHiddenStates: torch.Tensor | null, upsampleSize?: [number, number]): torch.Tensor;
}

/** DownBlock2D / DownEncoderBlock2D, and with `cross` CrossAttnDownBlock2D. */
export class DownBlock2D extends nn.Module implements DownBlock {
  readonly attentions: torch.nn.ModuleList<Transformer2DModel> | null;
  readonly resnets: torch.nn.ModuleList<ResnetBlock2D>;
  readonly downsamplers: torch.nn.ModuleList<Downsample2D> | null;
  /** Recompute each resnet's and transformer's activations in backward (see segment() above). */
  gradientCheckpointing = false;

  constructor(b: BlockOptions & { addDownsample: boolean; downsamplePadding: number }, cross?: CrossAttnOptions) {
    super();
    const f = { dtype: b.dtype, device: b.device };
    this.attentions = cross ? this.registerModule('attentions', new nn.ModuleList(Array.from({ length: b.numLayers }, () => transformer(b.outChannels, b, cross)))) : null;
    this.resnets = this.registerModule('resnets', new nn.ModuleList(Array.from({ length: b.numLayers }, (_, i) => resnet(b, i === 0 ? b.inChannels : b.outChannels, b.outChannels))));
    this.downsamplers = b.addDownsample ? this.registerModule('downsamplers', new nn.ModuleList([new Downsample2D(b.outChannels, b.outChannels, b.downsamplePadding, f)])) : null;
  }

  forward(h: torch.Tensor, temb: torch.Tensor | null, encoderHiddenStates: torch.Tensor | null = null): { hidden: torch.Tensor; residuals: torch.Tensor[] } {
    return tidy(() => {
      const residuals: torch.Tensor[] = [];
      let hidden = h;
      this.resnets.children().forEach((r, i) => {
        hidden = resnetStep(this, r as ResnetBlock2D, hidden, temb);
        if (this.attentions) hidden = attentionStep(this, this.attentions.at(i), hidden, encoderHiddenStates);
        residuals.push(hidden);
      });
      if (this.downsamplers) {
        hidden = this.downsamplers.at(0).forward(hidden);
        residuals.push(hidden);
      }
      return { hidden, residuals };
    });
  }
}

/** UpBlock2D, and with `cross` CrossAttnUpBlock2D: each resnet takes the matching skip connection. */
export class UpBlock2D extends nn.Module implements UpBlock {
  readonly attentions: torch.nn.ModuleList<Transformer2DModel> | null;
  readonly resnets: torch.nn.ModuleList<ResnetBlock2D>;
  readonly upsamplers: torch.nn.ModuleList<Upsample2D> | null;
  /** Recompute each resnet's and transformer's activations in backward (see segment() above). */
  gradientCheckpointing = false;

  constructor(b: BlockOptions & { prevOutputChannels: number; addUpsample: boolean }, cross?: CrossAttnOptions) {
    super();
    const f = { dtype: b.dtype, device: b.device };
    this.attentions = cross ? this.registerModule('attentions', new nn.ModuleList(Array.from({ length: b.numLayers }, () => transformer(b.outChannels, b, cross)))) : null;
    this.resnets = this.registerModule('resnets', new nn.ModuleList(Array.from({ length: b.numLayers }, (_, i) => {
      const skip = i === b.numLayers - 1 ? b.inChannels : b.outChannels;
      const resIn = i === 0 ? b.prevOutputChannels : b.outChannels;
      return resnet(b, resIn + skip, b.outChannels);
    })));
    this.upsamplers = b.addUpsample ? this.registerModule('upsamplers', new nn.ModuleList([new Upsample2D(b.outChannels, b.outChannels, f)])) : null;
  }

  forward(h: torch.Tensor, residuals: torch.Tensor[], temb: torch.Tensor | null, encoderHiddenStates: torch.Tensor | null = null, upsampleSize?: [number, number]): torch.Tensor {
    return tidy(() => {
      const skips = residuals.slice();
      let hidden = h;
      this.resnets.children().forEach((r, i) => {
        const skip = skips.pop()!;
        hidden = resnetStep(this, r as ResnetBlock2D, torch.cat([hidden, skip], 1), temb);
        if (this.attentions) hidden = attentionStep(this, this.attentions.at(i), hidden, encoderHiddenStates);
      });
      if (this.upsamplers) hidden = this.upsamplers.at(0).forward(hidden, upsampleSize);
      return hidden;
    });
  }
}

/** UpDecoderBlock2D: resnets without skip connections, then upsampling (VAE decoder). */
export class UpDecoderBlock2D extends nn.Module {
  readonly resnets: torch.nn.ModuleList<ResnetBlock2D>;
  readonly upsamplers: torch.nn.ModuleList<Upsample2D> | null;
  constructor(b: BlockOptions & { addUpsample: boolean }) {
    super();
    const f = { dtype: b.dtype, device: b.device };
    this.resnets = this.registerModule('resnets', new nn.ModuleList(Array.from({ length: b.numLayers }, (_, i) => resnet(b, i === 0 ? b.inChannels : b.outChannels, b.outChannels))));
    this.upsamplers = b.addUpsample ? this.registerModule('upsamplers', new nn.ModuleList([new Upsample2D(b.outChannels, b.outChannels, f)])) : null;
  }
  forward(h: torch.Tensor): torch.Tensor {
    return tidy(() => {
      let hidden = h;
      for (const r of this.resnets) hidden = r.forward(hidden, null);
      if (this.upsamplers) hidden = this.upsamplers.at(0).forward(hidden);
      return hidden;
    });
  }
}

/**
 * UNetMidBlock2DCrossAttn (with `cross`) or UNetMidBlock2D (VAE: one single-head self-attention
 * over pixels with GroupNorm and a residual): resnet, then (attention, resnet) per layer.
 */
export class MidBlock2D extends nn.Module {
  readonly attentions: torch.nn.ModuleList<Transformer2DModel | Attention>;
  readonly resnets: torch.nn.ModuleList<ResnetBlock2D>;
  /** Recompute the activations of each resnet and (cross-attention) transformer in backward. */
  gradientCheckpointing = false;
  constructor(b: Omit<BlockOptions, 'outChannels' | 'numLayers'> & { numLayers?: number }, cross?: CrossAttnOptions, vaeAttentionHeadDim?: number) {
    super();
    const c = b.inChannels;
    const opts: BlockOptions = { ...b, outChannels: c, numLayers: b.numLayers ?? 1 };
    this.attentions = this.registerModule('attentions', new nn.ModuleList<Transformer2DModel | Attention>(Array.from({ length: opts.numLayers }, () => {
      if (cross) return transformer(c, opts, cross);
      const dimHead = vaeAttentionHeadDim ?? c;
      return new Attention({
        queryDim: c, heads: c / dimHead, dimHead, rescaleOutputFactor: b.outputScaleFactor ?? 1, eps: b.eps, normNumGroups: b.groups,
        residualConnection: true, bias: true, dtype: b.dtype, device: b.device,
      });
    })));
    this.resnets = this.registerModule('resnets', new nn.ModuleList(Array.from({ length: opts.numLayers + 1 }, () => resnet(opts, c, c))));
  }
  forward(h: torch.Tensor, temb: torch.Tensor | null, encoderHiddenStates: torch.Tensor | null = null): torch.Tensor {
    return tidy(() => {
      let hidden = resnetStep(this, this.resnets.at(0), h, temb);
      this.attentions.children().forEach((a, i) => {
        hidden = a instanceof Transformer2DModel ? attentionStep(this, a, hidden, encoderHiddenStates) : (a as Attention).forward(hidden);
        hidden = resnetStep(this, this.resnets.at(i + 1), hidden, temb);
      });
      return hidden;
    });
  }
}
