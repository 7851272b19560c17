// The pre-norm transformer encoder of CLIP (transformers 4.30 models/clip/modeling_clip.py:
// CLIPAttention, CLIPMLP, CLIPEncoderLayer, CLIPEncoder), shared by the text tower (causal, with
// an optional padding mask) and the vision tower (full attention), under transformers' names.
import * as torch from '../torch/index.js';
import { ConfigError } from './config.js';

const { nn, F, tidy } = torch;

/** What the encoder reads of a text or vision config. */
export interface CLIPEncoderConfig {
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  hiddenAct: 'quick_gelu' | 'gelu';
  layerNormEps: number;
}

/** The lowest finite value of a dtype (transformers masks with finfo.min). */
export function lowest(dtype: torch.DType): number {
  switch (dtype) {
    case 'float16': return -65504;
    case 'bfloat16': return -3.3895313892515355e38;
    case 'float64': return -Number.MAX_VALUE;
    default: return -3.4028234663852886e38;
  }
}

export interface AttentionMasking {
  /** Additive (B or 1, 1, L, L) mask; it carries the causal part when given. */
  mask: torch.Tensor | null;
  /** Causal attention (the text tower); without a mask SDPA's is_causal is used. */
  causal: boolean;
}

export class CLIPAttention extends nn.Module {
  readonly k_proj: torch.nn.Linear;
  readonly v_proj: torch.nn.Linear;
  readonly q_proj: torch.nn.Linear;
  readonly out_proj: torch.nn.Linear;
  readonly heads: number;
  constructor(c: CLIPEncoderConfig, f: torch.nn.FactoryOptions) {
    super();
    if (c.hiddenSize % c.numAttentionHeads) throw new ConfigError('CLIP', 'hidden_size must be divisible by num_attention_heads');
    this.heads = c.numAttentionHeads;
    this.k_proj = this.registerModule('k_proj', new nn.Linear(c.hiddenSize, c.hiddenSize, f));
    this.v_proj = this.registerModule('v_proj', new nn.Linear(c.hiddenSize, c.hiddenSize, f));
    this.q_proj = this.registerModule('q_proj', new nn.Linear(c.hiddenSize, c.hiddenSize, f));
    this.out_proj = this.registerModule('out_proj', new nn.Linear(c.hiddenSize, c.hiddenSize, f));
  }
  /** x: (B, L, C). */
  forward(x: torch.Tensor, m: AttentionMasking): torch.Tensor {
    return tidy(() => {
      const [b, l, c] = x.shape as [number, number, number];
      const split = (t: torch.Tensor) => t.view(b, l, this.heads, c / this.heads).transpose(1, 2); // (B, nh, L, hd)
      const out = F.scaledDotProductAttention(split(this.q_proj.forward(x)), split(this.k_proj.forward(x)), split(this.v_proj.forward(x)), m.mask ? { attnMask: m.mask } : m.causal ? { isCausal: true } : {});
      return this.out_proj.forward(out.transpose(1, 2).reshape(b, l, c));
    });
  }
}

export class CLIPMLP extends nn.Module {
  readonly fc1: torch.nn.Linear;
  readonly fc2: torch.nn.Linear;
  constructor(readonly c: CLIPEncoderConfig, f: torch.nn.FactoryOptions) {
    super();
    this.fc1 = this.registerModule('fc1', new nn.Linear(c.hiddenSize, c.intermediateSize, f));
    this.fc2 = this.registerModule('fc2', new nn.Linear(c.intermediateSize, c.hiddenSize, f));
  }
  forward(x: torch.Tensor): torch.Tensor {
    return tidy(() => {
      const h = this.fc1.forward(x);
      return this.fc2.forward(this.c.hiddenAct === 'quick_gelu' ? F.quickGelu(h) : F.gelu(h));
    });
  }
}

export class CLIPEncoderLayer extends nn.Module {
  readonly self_attn: CLIPAttention;
  readonly layer_norm1: torch.nn.LayerNorm;
  readonly mlp: CLIPMLP;
  readonly layer_norm2: torch.nn.LayerNorm;
  constructor(c: CLIPEncoderConfig, f: torch.nn.FactoryOptions) {
    super();
    this.self_attn = this.registerModule('self_attn', new CLIPAttention(c, f));
    this.layer_norm1 = this.registerModule('layer_norm1', new nn.LayerNorm(c.hiddenSize, c.layerNormEps, f));
    this.mlp = this.registerModule('mlp', new CLIPMLP(c, f));
    this.layer_norm2 = this.registerModule('layer_norm2', new nn.LayerNorm(c.hiddenSize, c.layerNormEps, f));
  }
  forward(x: torch.Tensor, m: AttentionMasking): torch.Tensor {
    return tidy(() => {
      const h = this.self_attn.forward(this.layer_norm1.forward(x), m).add(x);
      return this.mlp.forward(this.layer_norm2.forward(h)).add(h);
    });
  }
}

export class CLIPEncoder extends nn.Module {
  readonly layers: torch.nn.ModuleList<CLIPEncoderLayer>;
  constructor(c: CLIPEncoderConfig, f: torch.nn.FactoryOptions) {
    super();
    this.layers = this.registerModule('layers', new nn.ModuleList(Array.from({ length: c.numHiddenLayers }, () => new CLIPEncoderLayer(c, f))));
  }
}

