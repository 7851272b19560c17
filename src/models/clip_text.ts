// CLIPTextModel and CLIPTextModelWithProjection of transformers 4.30 (models/clip/modeling_clip.py):
// token + position embeddings, pre-norm transformer layers with a causal mask, final LayerNorm,
// the pooled output at the position of the largest input id (the first <|endoftext|>, as 4.30
// picks it), and for the projection model text_embeds = text_projection(pooled).
import * as torch from '../torch/index.js';
import { ConfigError, get, type RawConfig } from './config.js';
import { CLIPEncoder, lowest } from './clip_encoder.js';

const { nn, tidy } = torch;

export interface CLIPTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  projectionDim: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  maxPositionEmbeddings: number;
  hiddenAct: 'quick_gelu' | 'gelu';
  layerNormEps: number;
  raw: RawConfig;
}

/** transformers' CLIPTextConfig defaults; a full CLIPConfig's text_config is accepted too. */
export function parseCLIPTextConfig(rawIn: RawConfig, model = 'CLIPTextModel'): CLIPTextConfig {
  const raw = (rawIn.text_config as RawConfig | undefined) ?? rawIn;
  const act = get<string>(raw, 'hidden_act', 'quick_gelu');
  if (act !== 'quick_gelu' && act !== 'gelu') throw new ConfigError(model, `\`hidden_act\` = "${act}" is not supported (supported: "quick_gelu", "gelu")`);
  return {
    vocabSize: get(raw, 'vocab_size', 49408),
    hiddenSize: get(raw, 'hidden_size', 512),
    intermediateSize: get(raw, 'intermediate_size', 2048),
    projectionDim: get(raw, 'projection_dim', get(rawIn, 'projection_dim', 512)),
    numHiddenLayers: get(raw, 'num_hidden_layers', 12),
    numAttentionHeads: get(raw, 'num_attention_heads', 8),
    maxPositionEmbeddings: get(raw, 'max_position_embeddings', 77),
    hiddenAct: act,
    layerNormEps: get(raw, 'layer_norm_eps', 1e-5),
    raw: rawIn,
  };
}

class CLIPTextEmbeddings extends nn.Module {
  readonly token_embedding: torch.nn.Embedding;
  readonly position_embedding: torch.nn.Embedding;
  readonly position_ids: torch.Tensor;
  constructor(c: CLIPTextConfig, f: torch.nn.FactoryOptions) {
    super();
    this.token_embedding = this.registerModule('token_embedding', new nn.Embedding(c.vocabSize, c.hiddenSize, f));
    this.position_embedding = this.registerModule('position_embedding', new nn.Embedding(c.maxPositionEmbeddings, c.hiddenSize, f));
    this.position_ids = this.registerBuffer('position_ids', tidy(() => torch.arange(0, c.maxPositionEmbeddings, 1, { dtype: 'int64', device: f.device }).unsqueeze(0)))!;
  }
  forward(inputIds: torch.Tensor): torch.Tensor {
    return tidy(() => {
      const len = inputIds.shape[inputIds.ndim - 1]!;
      return this.token_embedding.forward(inputIds).add(this.position_embedding.forward(this.position_ids.slice(1, 0, len)));
    });
  }
}

export interface CLIPTextOutput {
  lastHiddenState: torch.Tensor;
  pooledOutput: torch.Tensor;
  /** [embeddings, layer 1, ..., layer N] (before the final LayerNorm), as output_hidden_states=True gives. */
  hiddenStates: torch.Tensor[];
}

export class CLIPTextTransformer extends nn.Module {
  readonly embeddings: CLIPTextEmbeddings;
  readonly encoder: CLIPEncoder;
  readonly final_layer_norm: torch.nn.LayerNorm;
  constructor(c: CLIPTextConfig, f: torch.nn.FactoryOptions) {
    super();
    this.embeddings = this.registerModule('embeddings', new CLIPTextEmbeddings(c, f));
    this.encoder = this.registerModule('encoder', new CLIPEncoder(c, f));
    this.final_layer_norm = this.registerModule('final_layer_norm', new nn.LayerNorm(c.hiddenSize, c.layerNormEps, f));
  }
  forward(inputIds: torch.Tensor, o: { attentionMask?: torch.Tensor } = {}): CLIPTextOutput {
    return tidy(() => {
      const [b, l] = inputIds.shape as [number, number];
      let h = this.embeddings.forward(inputIds);
      // Without a padding mask (Stable Diffusion pads to 77 and passes none) attention is causal:
      // SDPA's is_causal, which leaves flash attention open on CUDA, where an additive float mask
      // would not. With one, the causal mask with the dtype's lowest value above the diagonal
      // (transformers uses finfo.min) plus (1 - m) * lowest over the padded keys.
      let mask: torch.Tensor | null = null;
      if (o.attentionMask) {
        const causal = torch.full([l, l], lowest(h.dtype), { dtype: h.dtype, device: h.device }).triu(1).unsqueeze(0).unsqueeze(0);
        const pad = o.attentionMask.to(h.dtype).rsub(1).mul(lowest(h.dtype)).view(b, 1, 1, l);
        mask = causal.add(pad).clampMin(lowest(h.dtype));
      }
      const hiddenStates = [h];
      for (const layer of this.encoder.layers) {
        h = layer.forward(h, { mask, causal: true });
        hiddenStates.push(h);
      }
      const last = this.final_layer_norm.forward(h);
      // transformers 4.30: the pooled token is at argmax(input_ids), the first <|endoftext|> (id 49407).
      const eos = inputIds.to('int32').argmax(-1);
      const pooled = last.index([torch.arange(0, b, 1, { dtype: 'int64', device: last.device }), eos]);
      return { lastHiddenState: last, pooledOutput: pooled, hiddenStates };
    });
  }
}


export class CLIPTextModel extends nn.Module {
  readonly config: CLIPTextConfig;
  readonly text_model: CLIPTextTransformer;
  constructor(config: CLIPTextConfig | RawConfig, o: torch.nn.FactoryOptions = {}) {
    super();
    this.config = 'raw' in config && 'hiddenSize' in config ? (config as CLIPTextConfig) : parseCLIPTextConfig(config as RawConfig);
    this.text_model = this.registerModule('text_model', new CLIPTextTransformer(this.config, { dtype: o.dtype, device: o.device }));
  }
  get dtype(): torch.DType {
    return this.text_model.final_layer_norm.weight!.dtype;
  }
  forward(inputIds: torch.Tensor, o: { attentionMask?: torch.Tensor } = {}): CLIPTextOutput {
    return this.text_model.forward(inputIds, o);
  }
}

export class CLIPTextModelWithProjection extends nn.Module {
  readonly config: CLIPTextConfig;
  readonly text_model: CLIPTextTransformer;
  readonly text_projection: torch.nn.Linear;
  constructor(config: CLIPTextConfig | RawConfig, o: torch.nn.FactoryOptions = {}) {
    super();
    this.config = 'raw' in config && 'hiddenSize' in config ? (config as CLIPTextConfig) : parseCLIPTextConfig(config as RawConfig, 'CLIPTextModelWithProjection');
    const f = { dtype: o.dtype, device: o.device };
    this.text_model = this.registerModule('text_model', new CLIPTextTransformer(this.config, f));
    this.text_projection = this.registerModule('text_projection', new nn.Linear(this.config.hiddenSize, this.config.projectionDim, { bias: false, ...f }));
  }
  get dtype(): torch.DType {
    return this.text_model.final_layer_norm.weight!.dtype;
  }
  forward(inputIds: torch.Tensor, o: { attentionMask?: torch.Tensor } = {}): CLIPTextOutput & { textEmbeds: torch.Tensor } {
    return tidy(() => {
      const out = this.text_model.forward(inputIds, o);
      return { ...out, textEmbeds: this.text_projection.forward(out.pooledOutput) };
    });
  }
}
