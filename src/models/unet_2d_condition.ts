// UNet2DConditionModel of diffusers 0.20 (models/unet_2d_condition.py) for the configs SD 1.x,
// SD 2.x and SDXL (base, refiner, turbo) use. The config is parsed with diffusers' defaults;
// options those models do not use are refused by name. Attribute names are checkpoint keys.
//
// Note on naming (diffusers issue #2011): `attention_head_dim` in these configs is really the
// number of heads; diffusers 0.20 uses `num_attention_heads ?? attention_head_dim` as the head
// count and `channels / heads` as the head size, and so do we.
import * as torch from '../torch/index.js';
import { ConfigError, get, perBlock, requireValue, type RawConfig } from './config.js';
import { TimestepEmbedding, timestepEmbedding } from './embeddings.js';
import { DownBlock2D, MidBlock2D, UpBlock2D } from './unet_blocks.js';

const { nn, F, tidy } = torch;
const MODEL = 'UNet2DConditionModel';

export type DownBlockType = 'CrossAttnDownBlock2D' | 'DownBlock2D';
export type UpBlockType = 'CrossAttnUpBlock2D' | 'UpBlock2D';

export interface UNetConfig {
  sampleSize: number | null;
  inChannels: number;
  outChannels: number;
  flipSinToCos: boolean;
  freqShift: number;
  downBlockTypes: DownBlockType[];
  midBlockType: 'UNetMidBlock2DCrossAttn';
  upBlockTypes: UpBlockType[];
  onlyCrossAttention: boolean[];
  blockOutChannels: number[];
  layersPerBlock: number[];
  downsamplePadding: number;
  midBlockScaleFactor: number;
  normNumGroups: number;
  normEps: number;
  crossAttentionDim: number[];
  transformerLayersPerBlock: number[];
  /** Heads per block (see the note at the top). */
  numAttentionHeads: number[];
  useLinearProjection: boolean;
  upcastAttention: boolean;
  resnetOutScaleFactor: number;
  convInKernel: number;
  convOutKernel: number;
  /** SDXL: 'text_time' adds an embedding of the pooled text embeds and the size/crop time ids. */
  additionEmbedType: 'text_time' | null;
  additionTimeEmbedDim: number | null;
  projectionClassEmbeddingsInputDim: number | null;
  /** The config.json object as given (saved back unchanged). */
  raw: RawConfig;
}

const DOWN_TYPES = ['CrossAttnDownBlock2D', 'DownBlock2D'];
const UP_TYPES = ['CrossAttnUpBlock2D', 'UpBlock2D'];

/** Parses a diffusers UNet2DConditionModel config.json with the library's defaults. */
export function parseUNetConfig(raw: RawConfig): UNetConfig {
  // Options that change the architecture in ways SD/SDXL checkpoints never use.
  requireValue(MODEL, raw, 'act_fn', ['silu']);
  requireValue(MODEL, raw, 'mid_block_type', ['UNetMidBlock2DCrossAttn']);
  requireValue(MODEL, raw, 'center_input_sample', [false]);
  requireValue(MODEL, raw, 'class_embed_type', [null]);
  requireValue(MODEL, raw, 'num_class_embeds', [null]);
  requireValue(MODEL, raw, 'encoder_hid_dim', [null]);
  requireValue(MODEL, raw, 'encoder_hid_dim_type', [null]);
  requireValue(MODEL, raw, 'dual_cross_attention', [false]);
  requireValue(MODEL, raw, 'resnet_time_scale_shift', ['default']);
  requireValue(MODEL, raw, 'resnet_skip_time_act', [false]);
  requireValue(MODEL, raw, 'time_embedding_type', ['positional']);
  requireValue(MODEL, raw, 'time_embedding_dim', [null]);
  requireValue(MODEL, raw, 'time_embedding_act_fn', [null]);
  requireValue(MODEL, raw, 'timestep_post_act', [null]);
  requireValue(MODEL, raw, 'time_cond_proj_dim', [null]);
  requireValue(MODEL, raw, 'class_embeddings_concat', [false]);
  requireValue(MODEL, raw, 'mid_block_only_cross_attention', [null, false]);
  requireValue(MODEL, raw, 'cross_attention_norm', [null]);
  requireValue(MODEL, raw, 'attention_type', ['default']);
  requireValue(MODEL, raw, 'addition_embed_type', [null, 'text_time']);

  const downBlockTypes = get<string[]>(raw, 'down_block_types', ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D']);
  const upBlockTypes = get<string[]>(raw, 'up_block_types', ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D']);
  for (const t of downBlockTypes) if (!DOWN_TYPES.includes(t)) throw new ConfigError(MODEL, `unknown down block type '${t}' (supported: ${DOWN_TYPES.join(', ')})`);
  for (const t of upBlockTypes) if (!UP_TYPES.includes(t)) throw new ConfigError(MODEL, `unknown up block type '${t}' (supported: ${UP_TYPES.join(', ')})`);
  const n = downBlockTypes.length;
  if (upBlockTypes.length !== n) throw new ConfigError(MODEL, 'down_block_types and up_block_types must have the same length');
  const blockOutChannels = get<number[]>(raw, 'block_out_channels', [320, 640, 1280, 1280]);
  if (blockOutChannels.length !== n) throw new ConfigError(MODEL, 'block_out_channels must have one entry per down block');
  const attentionHeadDim = get<number | number[]>(raw, 'attention_head_dim', 8);
  const numAttentionHeads = get<number | number[] | null>(raw, 'num_attention_heads', null) ?? attentionHeadDim;
  const additionEmbedType = get<'text_time' | null>(raw, 'addition_embed_type', null);
  const cfg: UNetConfig = {
    sampleSize: get<number | null>(raw, 'sample_size', null),
    inChannels: get(raw, 'in_channels', 4),
    outChannels: get(raw, 'out_channels', 4),
    flipSinToCos: get(raw, 'flip_sin_to_cos', true),
    freqShift: get(raw, 'freq_shift', 0),
    downBlockTypes: downBlockTypes as DownBlockType[],
    midBlockType: 'UNetMidBlock2DCrossAttn',
    upBlockTypes: upBlockTypes as UpBlockType[],
    onlyCrossAttention: perBlock(MODEL, 'only_cross_attention', get<boolean | boolean[]>(raw, 'only_cross_attention', false), n),
    blockOutChannels,
    layersPerBlock: perBlock(MODEL, 'layers_per_block', get<number | number[]>(raw, 'layers_per_block', 2), n),
    downsamplePadding: get(raw, 'downsample_padding', 1),
    midBlockScaleFactor: get(raw, 'mid_block_scale_factor', 1),
    normNumGroups: get(raw, 'norm_num_groups', 32),
    normEps: get(raw, 'norm_eps', 1e-5),
    crossAttentionDim: perBlock(MODEL, 'cross_attention_dim', get<number | number[]>(raw, 'cross_attention_dim', 1280), n),
    transformerLayersPerBlock: perBlock(MODEL, 'transformer_layers_per_block', get<number | number[]>(raw, 'transformer_layers_per_block', 1), n),
    numAttentionHeads: perBlock(MODEL, 'num_attention_heads', numAttentionHeads, n),
    useLinearProjection: get(raw, 'use_linear_projection', false),
    upcastAttention: get(raw, 'upcast_attention', false),
    resnetOutScaleFactor: get(raw, 'resnet_out_scale_factor', 1.0),
    convInKernel: get(raw, 'conv_in_kernel', 3),
    convOutKernel: get(raw, 'conv_out_kernel', 3),
    additionEmbedType,
    additionTimeEmbedDim: get<number | null>(raw, 'addition_time_embed_dim', null),
    projectionClassEmbeddingsInputDim: get<number | null>(raw, 'projection_class_embeddings_input_dim', null),
    raw,
  };
  if (additionEmbedType === 'text_time' && (cfg.additionTimeEmbedDim === null || cfg.projectionClassEmbeddingsInputDim === null)) {
    throw new ConfigError(MODEL, "addition_embed_type 'text_time' needs addition_time_embed_dim and projection_class_embeddings_input_dim");
  }
  return cfg;
}

/** SDXL's extra conditioning: pooled text embeds [B, D] and time ids [B, 6] (or [B, 5] for the refiner). */
export interface AddedCond {
  textEmbeds: torch.Tensor;
  timeIds: torch.Tensor;
}

export interface UNetOutput {
  sample: torch.Tensor;
  /** Filled when forward() is asked to capture them (parity checks). */
  intermediates?: Record<string, torch.Tensor>;
}

export class UNet2DConditionModel extends nn.Module {
  readonly config: UNetConfig;
  readonly conv_in: torch.nn.Conv2d;
  readonly time_embedding: TimestepEmbedding;
  readonly add_embedding: TimestepEmbedding | null;
  readonly down_blocks: torch.nn.ModuleList<DownBlock2D>;
  readonly up_blocks: torch.nn.ModuleList<UpBlock2D>;
  readonly mid_block: MidBlock2D;
  readonly conv_norm_out: torch.nn.GroupNorm;
  readonly conv_out: torch.nn.Conv2d;
  readonly numUpsamplers: number;

  constructor(config: UNetConfig | RawConfig, o: torch.nn.FactoryOptions = {}) {
    super();
    const c = 'raw' in config && 'blockOutChannels' in config ? (config as UNetConfig) : parseUNetConfig(config as RawConfig);
    this.config = c;
    const f = { dtype: o.dtype, device: o.device };
    const boc = c.blockOutChannels;
    const timeEmbedDim = boc[0]! * 4;
    const inPad = (c.convInKernel - 1) / 2;
    this.conv_in = this.registerModule('conv_in', new nn.Conv2d(c.inChannels, boc[0]!, c.convInKernel, { padding: inPad, ...f }));
    this.time_embedding = this.registerModule('time_embedding', new TimestepEmbedding(boc[0]!, timeEmbedDim, f));
    this.add_embedding = c.additionEmbedType === 'text_time'
      ? this.registerModule('add_embedding', new TimestepEmbedding(c.projectionClassEmbeddingsInputDim!, timeEmbedDim, f)) : null;

    const blockBase = { tembChannels: timeEmbedDim, eps: c.normEps, groups: c.normNumGroups, outputScaleFactor: c.resnetOutScaleFactor, ...f };
    const cross = (i: number, heads: number[], crossDims: number[], layers: number[]) => ({
      transformerLayers: layers[i]!, heads: heads[i]!, crossAttentionDim: crossDims[i]!, useLinearProjection: c.useLinearProjection,
      onlyCrossAttention: c.onlyCrossAttention[i], upcastAttention: c.upcastAttention,
    });
    this.down_blocks = this.registerModule('down_blocks', new nn.ModuleList(c.downBlockTypes.map((type, i) => new DownBlock2D({
      ...blockBase, numLayers: c.layersPerBlock[i]!, inChannels: i === 0 ? boc[0]! : boc[i - 1]!, outChannels: boc[i]!,
      addDownsample: i < boc.length - 1, downsamplePadding: c.downsamplePadding,
    }, type === 'CrossAttnDownBlock2D' ? cross(i, c.numAttentionHeads, c.crossAttentionDim, c.transformerLayersPerBlock) : undefined))));

    // Up blocks run over the reversed per-block settings (diffusers' reversed_* lists).
    const rev = <T>(xs: T[]) => [...xs].reverse();
    const rBoc = rev(boc);
    const rHeads = rev(c.numAttentionHeads);
    const rLayers = rev(c.layersPerBlock);
    const rCross = rev(c.crossAttentionDim);
    const rTLayers = rev(c.transformerLayersPerBlock);
    let upsamplers = 0;
    this.up_blocks = this.registerModule('up_blocks', new nn.ModuleList(c.upBlockTypes.map((type, i) => {
      const isFinal = i === boc.length - 1;
      if (!isFinal) upsamplers++;
      return new UpBlock2D({
        ...blockBase, numLayers: rLayers[i]! + 1, inChannels: rBoc[Math.min(i + 1, boc.length - 1)]!, outChannels: rBoc[i]!,
        prevOutputChannels: i === 0 ? rBoc[0]! : rBoc[i - 1]!, addUpsample: !isFinal,
      }, type === 'CrossAttnUpBlock2D' ? cross(i, rHeads, rCross, rTLayers) : undefined);
    })));
    this.numUpsamplers = upsamplers;
    this.mid_block = this.registerModule('mid_block', new MidBlock2D({
      ...blockBase, inChannels: boc[boc.length - 1]!, outputScaleFactor: c.midBlockScaleFactor,
    }, cross(boc.length - 1, c.numAttentionHeads, c.crossAttentionDim, c.transformerLayersPerBlock)));
    this.conv_norm_out = this.registerModule('conv_norm_out', new nn.GroupNorm(c.normNumGroups, boc[0]!, c.normEps, true, f));
    this.conv_out = this.registerModule('conv_out', new nn.Conv2d(boc[0]!, c.outChannels, c.convOutKernel, { padding: (c.convOutKernel - 1) / 2, ...f }));
  }

  get dtype(): torch.DType {
    return this.conv_in.weight.dtype;
  }

  /**
   * Gradient checkpointing (diffusers' enable_gradient_checkpointing): in training mode each resnet
   * and each Transformer2DModel of the down, mid and up blocks keeps only its inputs and output;
   * backward recomputes the rest (unet_blocks.ts says how this differs from diffusers 0.20's split).
   * Same gradients, less activation memory, about one more forward pass of compute.
   */
  enableGradientCheckpointing(on = true): this {
    for (const [name, m] of this.namedModules()) {
      if (name && 'gradientCheckpointing' in m) (m as { gradientCheckpointing: boolean }).gradientCheckpointing = on;
    }
    return this;
  }

  get gradientCheckpointing(): boolean {
    return this.down_blocks.at(0).gradientCheckpointing;
  }

  /**
   * sample [B, C, H, W], timestep (number or [B]/[] tensor), encoderHiddenStates [B, L, D];
   * addedCond for SDXL. Returns the predicted noise [B, C, H, W].
   */
  forward(sample: torch.Tensor, timestep: number | torch.Tensor, encoderHiddenStates: torch.Tensor,
    o: { addedCond?: AddedCond; captureIntermediates?: boolean } = {}): UNetOutput {
    const c = this.config;
    return tidy(() => {
      const intermediates: Record<string, torch.Tensor> = {};
      const capture = (name: string, t: torch.Tensor) => {
        if (o.captureIntermediates) intermediates[name] = t;
      };
      // Sizes not divisible by 2^upsamplers need the skip connections' sizes when upsampling.
      const factor = 2 ** this.numUpsamplers;
      const forwardUpsampleSize = sample.shape.slice(-2).some((s) => s % factor !== 0);

      // 1. time
      let timesteps = typeof timestep === 'number'
        ? torch.tensor([timestep], { dtype: Number.isInteger(timestep) ? 'int64' : 'float32', device: sample.device })
        : timestep.ndim === 0 ? timestep.unsqueeze(0).to(sample.device) : timestep;
      timesteps = timesteps.expand(sample.shape[0]!);
      const tEmb = timestepEmbedding(timesteps, c.blockOutChannels[0]!, { flipSinToCos: c.flipSinToCos, freqShift: c.freqShift }).to(sample.dtype);
      capture('time_proj', tEmb);
      let emb = this.time_embedding.forward(tEmb);
      capture('time_embedding', emb);
      if (this.add_embedding) {
        if (!o.addedCond) throw new Error(`${MODEL} with addition_embed_type 'text_time' needs addedCond { textEmbeds, timeIds }`);
        const { textEmbeds, timeIds } = o.addedCond;
        const timeEmbeds = timestepEmbedding(timeIds.flatten(), c.additionTimeEmbedDim!, { flipSinToCos: c.flipSinToCos, freqShift: c.freqShift });
        capture('add_time_proj', timeEmbeds);
        const addEmbeds = torch.cat([textEmbeds, timeEmbeds.reshape(textEmbeds.shape[0]!, -1)], -1).to(emb.dtype);
        const aug = this.add_embedding.forward(addEmbeds);
        capture('add_embedding', aug);
        emb = emb.add(aug);
      }

      // 2. pre-process
      let h = this.conv_in.forward(sample);
      capture('conv_in', h);

      // 3. down
      const residuals: torch.Tensor[] = [h];
      for (const block of this.down_blocks) {
        const out = block.forward(h, emb, block.attentions ? encoderHiddenStates : null);
        h = out.hidden;
        residuals.push(...out.residuals);
      }

      // 4. mid
      h = this.mid_block.forward(h, emb, encoderHiddenStates);
      capture('mid_block', h);

      // 5. up
      this.up_blocks.children().forEach((b, i) => {
        const block = b as UpBlock2D;
        const n = block.resnets.length;
        const skips = residuals.splice(residuals.length - n, n);
        const isFinal = i === this.up_blocks.length - 1;
        const size = !isFinal && forwardUpsampleSize ? (residuals[residuals.length - 1]!.shape.slice(2) as [number, number]) : undefined;
        h = block.forward(h, skips, emb, block.attentions ? encoderHiddenStates : null, size);
      });

      // 6. post-process
      const out = this.conv_out.forward(F.silu(this.conv_norm_out.forward(h)));
      return o.captureIntermediates ? { sample: out, intermediates } : { sample: out };
    });
  }
}
