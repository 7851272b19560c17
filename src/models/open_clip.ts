// open_clip's CLIP (the version vendored in DiffusionDPO utils/open_clip): the model of HPSv2,
// HPSv2.1 and LAION's CLIP ViT-H-14, under open_clip's names so its checkpoints load unchanged:
// `visual.*` (conv1, class_embedding, positional_embedding, ln_pre, transformer, ln_post, proj),
// the text tower at the top level (token_embedding, positional_embedding, transformer, ln_final,
// text_projection), and logit_scale. Both towers are stacks of the same ResidualAttentionBlock
// (nn.MultiheadAttention with a fused in_proj, an MLP c_fc -> GELU -> c_proj), the text one causal.
import * as torch from '../torch/index.js';
import { ConfigError, get, type RawConfig } from './config.js';

const { nn, F, tidy } = torch;

export interface OpenClipConfig {
  embedDim: number;
  vision: { imageSize: number; layers: number; width: number; headWidth: number; patchSize: number };
  text: { contextLength: number; vocabSize: number; width: number; heads: number; layers: number };
  /** nn.GELU unless the config asks for QuickGELU (the OpenAI-trained models). */
  quickGelu: boolean;
}

/** open_clip's model config JSON (e.g. ViT-H-14.json): embed_dim, vision_cfg, text_cfg. */
export function parseOpenClipConfig(raw: RawConfig): OpenClipConfig {
  const v = (raw.vision_cfg ?? {}) as RawConfig;
  const t = (raw.text_cfg ?? {}) as RawConfig;
  for (const k of ['timm_model_name', 'hf_model_name']) {
    if (v[k] || t[k]) throw new ConfigError('open_clip CLIP', `\`${k}\` towers are not supported (ViT image and transformer text towers only)`);
  }
  const width = get<number>(v, 'width', 768);
  return {
    embedDim: get(raw, 'embed_dim', 512),
    vision: { imageSize: get(v, 'image_size', 224), layers: get(v, 'layers', 12), width, headWidth: get(v, 'head_width', 64), patchSize: get(v, 'patch_size', 16) },
    text: { contextLength: get(t, 'context_length', 77), vocabSize: get(t, 'vocab_size', 49408), width: get(t, 'width', 512), heads: get(t, 'heads', 8), layers: get(t, 'layers', 12) },
    quickGelu: get(raw, 'quick_gelu', false),
  };
}

/** nn.MultiheadAttention (batch-first math) with its fused input projection. */
class MultiheadAttention extends nn.Module {
  readonly in_proj_weight: torch.Tensor;
  readonly in_proj_bias: torch.Tensor;
  readonly out_proj: torch.nn.Linear;
  constructor(readonly width: number, readonly heads: number, f: torch.nn.FactoryOptions) {
    super();
    if (width % heads) throw new ConfigError('open_clip CLIP', `width ${width} is not divisible by ${heads} heads`);
    this.in_proj_weight = this.registerParameter('in_proj_weight', torch.empty([3 * width, width], f));
    this.in_proj_bias = this.registerParameter('in_proj_bias', torch.zeros([3 * width], f));
    nn.init.xavierUniform_(this.in_proj_weight);
    this.out_proj = this.registerModule('out_proj', new nn.Linear(width, width, f));
  }
  forward(x: torch.Tensor, causal: boolean): torch.Tensor {
    return tidy(() => {
      const [b, l, c] = x.shape as [number, number, number];
      const [q, k, v] = F.linear(x, this.in_proj_weight, this.in_proj_bias).chunk(3, -1).map((t) => t.view(b, l, this.heads, c / this.heads).transpose(1, 2));
      const out = F.scaledDotProductAttention(q!, k!, v!, causal ? { isCausal: true } : {});
      return this.out_proj.forward(out.transpose(1, 2).reshape(b, l, c));
    });
  }
}

class Mlp extends nn.Module {
  readonly c_fc: torch.nn.Linear;
  readonly c_proj: torch.nn.Linear;
  constructor(width: number, readonly quickGelu: boolean, f: torch.nn.FactoryOptions) {
    super();
    this.c_fc = this.registerModule('c_fc', new nn.Linear(width, width * 4, f));
    this.c_proj = this.registerModule('c_proj', new nn.Linear(width * 4, width, f));
  }
  forward(x: torch.Tensor): torch.Tensor {
    return tidy(() => {
      const h = this.c_fc.forward(x);
      return this.c_proj.forward(this.quickGelu ? F.quickGelu(h) : F.gelu(h));
    });
  }
}

class ResidualAttentionBlock extends nn.Module {
  readonly ln_1: torch.nn.LayerNorm;
  readonly attn: MultiheadAttention;
  readonly ln_2: torch.nn.LayerNorm;
  readonly mlp: Mlp;
  constructor(width: number, heads: number, quickGelu: boolean, f: torch.nn.FactoryOptions) {
    super();
    this.ln_1 = this.registerModule('ln_1', new nn.LayerNorm(width, 1e-5, f));
    this.attn = this.registerModule('attn', new MultiheadAttention(width, heads, f));
    this.ln_2 = this.registerModule('ln_2', new nn.LayerNorm(width, 1e-5, f));
    this.mlp = this.registerModule('mlp', new Mlp(width, quickGelu, f));
  }
  forward(x: torch.Tensor, causal: boolean): torch.Tensor {
    return tidy(() => {
      const h = x.add(this.attn.forward(this.ln_1.forward(x), causal));
      return h.add(this.mlp.forward(this.ln_2.forward(h)));
    });
  }
}

class Transformer extends nn.Module {
  readonly resblocks: torch.nn.ModuleList<ResidualAttentionBlock>;
  constructor(width: number, layers: number, heads: number, quickGelu: boolean, f: torch.nn.FactoryOptions) {
    super();
    this.resblocks = this.registerModule('resblocks', new nn.ModuleList(Array.from({ length: layers }, () => new ResidualAttentionBlock(width, heads, quickGelu, f))));
  }
  forward(x: torch.Tensor, causal: boolean): torch.Tensor {
    return tidy(() => {
      let h = x;
      for (const block of this.resblocks) h = block.forward(h, causal);
      return h;
    });
  }
}

class VisionTransformer extends nn.Module {
  readonly class_embedding: torch.Tensor;
  readonly positional_embedding: torch.Tensor;
  readonly proj: torch.Tensor;
  readonly conv1: torch.nn.Conv2d;
  readonly ln_pre: torch.nn.LayerNorm;
  readonly transformer: Transformer;
  readonly ln_post: torch.nn.LayerNorm;
  constructor(readonly c: OpenClipConfig, f: torch.nn.FactoryOptions) {
    super();
    const v = c.vision;
    if (v.imageSize % v.patchSize) throw new ConfigError('open_clip CLIP', `image_size ${v.imageSize} is not a multiple of patch_size ${v.patchSize}`);
    const scale = v.width ** -0.5;
    const grid = v.imageSize / v.patchSize;
    this.class_embedding = this.registerParameter('class_embedding', tidy(() => torch.randn([v.width], f).mul(scale)));
    this.positional_embedding = this.registerParameter('positional_embedding', tidy(() => torch.randn([grid * grid + 1, v.width], f).mul(scale)));
    this.proj = this.registerParameter('proj', tidy(() => torch.randn([v.width, c.embedDim], f).mul(scale)));
    this.conv1 = this.registerModule('conv1', new nn.Conv2d(3, v.width, v.patchSize, { stride: v.patchSize, bias: false, ...f }));
    this.ln_pre = this.registerModule('ln_pre', new nn.LayerNorm(v.width, 1e-5, f));
    this.transformer = this.registerModule('transformer', new Transformer(v.width, v.layers, v.width / v.headWidth, c.quickGelu, f));
    this.ln_post = this.registerModule('ln_post', new nn.LayerNorm(v.width, 1e-5, f));
  }
  /** (B, 3, S, S) -> (B, embed_dim): ln_post of the class token, times proj. */
  forward(pixelValues: torch.Tensor): torch.Tensor {
    return tidy(() => {
      const size = this.c.vision.imageSize;
      const [b, , h, w] = pixelValues.shape as [number, number, number, number];
      if (h !== size || w !== size) throw new RangeError(`open_clip vision input is ${h}x${w}; the model takes ${size}x${size}`);
      const patches = this.conv1.forward(pixelValues.to(this.conv1.weight.dtype)).flatten(2).transpose(1, 2);
      const cls = this.class_embedding.view(1, 1, -1).expand([b, 1, this.c.vision.width]).to(patches.dtype);
      const x = this.ln_pre.forward(torch.cat([cls, patches], 1).add(this.positional_embedding));
      const out = this.transformer.forward(x, false);
      return this.ln_post.forward(out.select(1, 0)).matmul(this.proj);
    });
  }
}

/** open_clip's CLIP with a ViT image tower and the transformer text tower. */
export class OpenClipModel extends nn.Module {
  readonly config: OpenClipConfig;
  readonly positional_embedding: torch.Tensor;
  readonly text_projection: torch.Tensor;
  readonly logit_scale: torch.Tensor;
  readonly visual: VisionTransformer;
  readonly transformer: Transformer;
  readonly token_embedding: torch.nn.Embedding;
  readonly ln_final: torch.nn.LayerNorm;
  constructor(config: OpenClipConfig | RawConfig, o: torch.nn.FactoryOptions = {}) {
    super();
    this.config = 'vision' in config && 'embedDim' in config ? (config as OpenClipConfig) : parseOpenClipConfig(config as RawConfig);
    const c = this.config;
    const f = { dtype: o.dtype, device: o.device };
    // open_clip registers these parameters on the model itself: they lead its state dict
    this.positional_embedding = this.registerParameter('positional_embedding', tidy(() => torch.randn([c.text.contextLength, c.text.width], f).mul(0.01)));
    this.text_projection = this.registerParameter('text_projection', tidy(() => torch.randn([c.text.width, c.embedDim], f).mul(c.text.width ** -0.5)));
    this.logit_scale = this.registerParameter('logit_scale', torch.full([], Math.log(1 / 0.07), f));
    this.visual = this.registerModule('visual', new VisionTransformer(c, f));
    this.transformer = this.registerModule('transformer', new Transformer(c.text.width, c.text.layers, c.text.heads, c.quickGelu, f));
    this.token_embedding = this.registerModule('token_embedding', new nn.Embedding(c.text.vocabSize, c.text.width, f));
    this.ln_final = this.registerModule('ln_final', new nn.LayerNorm(c.text.width, 1e-5, f));
  }

  get dtype(): torch.DType {
    return this.ln_final.weight!.dtype;
  }

  /** encode_image: (B, embed_dim), L2-normalised when asked (the scorers do). */
  encodeImage(pixelValues: torch.Tensor, o: { normalize?: boolean } = {}): torch.Tensor {
    return tidy(() => {
      const f = this.visual.forward(pixelValues);
      return o.normalize ? F.normalize(f, 2, -1) : f;
    });
  }

  /** encode_text of token ids (B, context_length), pooled at the end-of-text token (argmax of the ids). */
  encodeText(tokens: torch.Tensor, o: { normalize?: boolean } = {}): torch.Tensor {
    return tidy(() => {
      const [b, l] = tokens.shape as [number, number];
      const x = this.token_embedding.forward(tokens).add(this.positional_embedding.slice(0, 0, l));
      const out = this.ln_final.forward(this.transformer.forward(x, true));
      const eot = tokens.to('int32').argmax(-1);
      const pooled = out.index([torch.arange(0, b, 1, { dtype: 'int64', device: out.device }), eot]).matmul(this.text_projection);
      return o.normalize ? F.normalize(pooled, 2, -1) : pooled;
    });
  }
}
