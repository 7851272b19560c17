// CLIPVisionTransformer and CLIPModel of transformers 4.30 (models/clip/modeling_clip.py): a ViT
// with a class token, learned positions, a LayerNorm before the encoder (named pre_layrnorm, as
// transformers spells it) and after it on the class token (post_layernorm); CLIPModel pairs it
// with the text tower and projects both into one space, with a learned logit_scale. PickScore
// (yuvalkirstain/PickScore_v1) and OpenAI's ViT-L/14 are CLIPModels.
import * as torch from '../torch/index.js';
import { CLIPEncoder, type CLIPEncoderConfig } from './clip_encoder.js';
import { CLIPTextTransformer, parseCLIPTextConfig, type CLIPTextConfig } from './clip_text.js';
import { ConfigError, get, type RawConfig } from './config.js';

const { nn, tidy } = torch;

export interface CLIPVisionConfig extends CLIPEncoderConfig {
  numChannels: number;
  imageSize: number;
  patchSize: number;
  projectionDim: number;
}

/** transformers' CLIPVisionConfig defaults; a full CLIPConfig's vision_config is accepted too. */
export function parseCLIPVisionConfig(rawIn: RawConfig): CLIPVisionConfig {
  const raw = (rawIn.vision_config as RawConfig | undefined) ?? rawIn;
  const act = get<string>(raw, 'hidden_act', 'quick_gelu');
  if (act !== 'quick_gelu' && act !== 'gelu') throw new ConfigError('CLIPVisionModel', `\`hidden_act\` = "${act}" is not supported (supported: "quick_gelu", "gelu")`);
  return {
    hiddenSize: get(raw, 'hidden_size', 768),
    intermediateSize: get(raw, 'intermediate_size', 3072),
    projectionDim: get(rawIn, 'projection_dim', get(raw, 'projection_dim', 512)),
    numHiddenLayers: get(raw, 'num_hidden_layers', 12),
    numAttentionHeads: get(raw, 'num_attention_heads', 12),
    numChannels: get(raw, 'num_channels', 3),
    imageSize: get(raw, 'image_size', 224),
    patchSize: get(raw, 'patch_size', 32),
    hiddenAct: act,
    layerNormEps: get(raw, 'layer_norm_eps', 1e-5),
  };
}

class CLIPVisionEmbeddings extends nn.Module {
  readonly class_embedding: torch.Tensor;
  readonly patch_embedding: torch.nn.Conv2d;
  readonly position_embedding: torch.nn.Embedding;
  readonly position_ids: torch.Tensor;
  constructor(readonly c: CLIPVisionConfig, f: torch.nn.FactoryOptions) {
    super();
    if (c.imageSize % c.patchSize) throw new ConfigError('CLIPVisionModel', `image_size ${c.imageSize} is not a multiple of patch_size ${c.patchSize}`);
    const positions = (c.imageSize / c.patchSize) ** 2 + 1;
    this.class_embedding = this.registerParameter('class_embedding', torch.randn([c.hiddenSize], f));
    this.patch_embedding = this.registerModule('patch_embedding', new nn.Conv2d(c.numChannels, c.hiddenSize, c.patchSize, { stride: c.patchSize, bias: false, ...f }));
    this.position_embedding = this.registerModule('position_embedding', new nn.Embedding(positions, c.hiddenSize, f));
    this.position_ids = this.registerBuffer('position_ids', tidy(() => torch.arange(0, positions, 1, { dtype: 'int64', device: f.device }).unsqueeze(0)))!;
  }
  /** pixelValues (B, C, S, S) at the configured image size -> (B, 1 + patches, D). */
  forward(pixelValues: torch.Tensor): torch.Tensor {
    return tidy(() => {
      const [b, , h, w] = pixelValues.shape as [number, number, number, number];
      if (h !== this.c.imageSize || w !== this.c.imageSize) throw new RangeError(`CLIP vision input is ${h}x${w}; the model takes ${this.c.imageSize}x${this.c.imageSize}`);
      const patches = this.patch_embedding.forward(pixelValues.to(this.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2);
      const cls = this.class_embedding.view(1, 1, -1).expand([b, 1, this.c.hiddenSize]).to(patches.dtype);
      return torch.cat([cls, patches], 1).add(this.position_embedding.forward(this.position_ids));
    });
  }
}

export interface CLIPVisionOutput {
  lastHiddenState: torch.Tensor;
  /** post_layernorm of the class token. */
  pooledOutput: torch.Tensor;
}

export class CLIPVisionTransformer extends nn.Module {
  readonly embeddings: CLIPVisionEmbeddings;
  readonly pre_layrnorm: torch.nn.LayerNorm;
  readonly encoder: CLIPEncoder;
  readonly post_layernorm: torch.nn.LayerNorm;
  constructor(readonly config: CLIPVisionConfig, f: torch.nn.FactoryOptions = {}) {
    super();
    this.embeddings = this.registerModule('embeddings', new CLIPVisionEmbeddings(config, f));
    this.pre_layrnorm = this.registerModule('pre_layrnorm', new nn.LayerNorm(config.hiddenSize, config.layerNormEps, f));
    this.encoder = this.registerModule('encoder', new CLIPEncoder(config, f));
    this.post_layernorm = this.registerModule('post_layernorm', new nn.LayerNorm(config.hiddenSize, config.layerNormEps, f));
  }
  forward(pixelValues: torch.Tensor): CLIPVisionOutput {
    return tidy(() => {
      let h = this.pre_layrnorm.forward(this.embeddings.forward(pixelValues));
      for (const layer of this.encoder.layers) h = layer.forward(h, { mask: null, causal: false });
      return { lastHiddenState: h, pooledOutput: this.post_layernorm.forward(h.select(1, 0)) };
    });
  }
}

export interface CLIPModelConfig {
  text: CLIPTextConfig;
  vision: CLIPVisionConfig;
  projectionDim: number;
  logitScaleInit: number;
  raw: RawConfig;
}

export function parseCLIPModelConfig(raw: RawConfig): CLIPModelConfig {
  if (!raw.text_config || !raw.vision_config) throw new ConfigError('CLIPModel', 'a CLIPModel config needs text_config and vision_config');
  const projectionDim = get(raw, 'projection_dim', 512);
  return {
    text: { ...parseCLIPTextConfig(raw.text_config as RawConfig, 'CLIPModel'), projectionDim },
    vision: { ...parseCLIPVisionConfig(raw.vision_config as RawConfig), projectionDim },
    projectionDim,
    logitScaleInit: get(raw, 'logit_scale_init_value', 2.6592),
    raw,
  };
}

/** transformers' CLIPModel: both towers, their projections, and logit_scale (log of the similarity scale). */
export class CLIPModel extends nn.Module {
  readonly config: CLIPModelConfig;
  readonly logit_scale: torch.Tensor;
  readonly text_model: CLIPTextTransformer;
  readonly vision_model: CLIPVisionTransformer;
  readonly visual_projection: torch.nn.Linear;
  readonly text_projection: torch.nn.Linear;
  constructor(config: CLIPModelConfig | RawConfig, o: torch.nn.FactoryOptions = {}) {
    super();
    this.config = 'vision' in config && 'text' in config ? (config as CLIPModelConfig) : parseCLIPModelConfig(config as RawConfig);
    const c = this.config;
    const f = { dtype: o.dtype, device: o.device };
    // PyTorch lists a module's own parameters before its children's: logit_scale comes first in the state dict
    this.logit_scale = this.registerParameter('logit_scale', torch.full([], c.logitScaleInit, f));
    this.text_model = this.registerModule('text_model', new CLIPTextTransformer(c.text, f));
    this.vision_model = this.registerModule('vision_model', new CLIPVisionTransformer(c.vision, f));
    this.visual_projection = this.registerModule('visual_projection', new nn.Linear(c.vision.hiddenSize, c.projectionDim, { bias: false, ...f }));
    this.text_projection = this.registerModule('text_projection', new nn.Linear(c.text.hiddenSize, c.projectionDim, { bias: false, ...f }));
  }

  get dtype(): torch.DType {
    return this.vision_model.post_layernorm.weight!.dtype;
  }

  /** get_image_features: the projected class token (not normalised). */
  imageFeatures(pixelValues: torch.Tensor): torch.Tensor {
    return tidy(() => this.visual_projection.forward(this.vision_model.forward(pixelValues).pooledOutput));
  }

  /** get_text_features: the projected end-of-text token (not normalised). */
  textFeatures(inputIds: torch.Tensor, o: { attentionMask?: torch.Tensor } = {}): torch.Tensor {
    return tidy(() => this.text_projection.forward(this.text_model.forward(inputIds, o).pooledOutput));
  }
}
