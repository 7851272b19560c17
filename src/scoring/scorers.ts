// The reward models, as the reference's Selector classes score (DiffusionDPO utils/*_utils.py):
//   PickScore   transformers CLIPModel; text with padding to the longest prompt and its attention
//               mask, both embeddings L2-normalised; score = logit_scale.exp() · cosine (PickScore's
//               scale, ~20; the reference's Selector returns the cosine and scales only before its
//               optional softmax over candidates, so its ranking is the same)
//   HPSv2/2.1   open_clip ViT-H-14 with HPS weights; score = cosine of the normalised features
//   CLIP        open_clip ViT-H-14 laion2B-s32B-b79K; the same cosine
//   aesthetics  CLIP ViT-L/14 image features, L2-normalised, into the LAION MLP head
// Images are preprocessed on the host (preprocess.ts) and scored in batches on the device; a
// prompt's text features are computed once per batch.
import * as torch from '../torch/index.js';
import type { CLIPModel, OpenClipModel } from '../models/index.js';
import type { CLIPTokenizer } from '../tokenizers/clip.js';
import type { AestheticsHead } from './aesthetics_head.js';
import { preprocessBatch, type ImagePreprocess } from './preprocess.js';
import type { ScoreInput, Scorer, ScorerName } from './types.js';

interface Common {
  name: ScorerName;
  description: string;
  device: torch.Device;
  batchSize: number;
  preprocess: ImagePreprocess;
}

/** Runs `scoreBatch` over the inputs `batchSize` at a time, one host read per batch. */
async function inBatches(inputs: readonly ScoreInput[], batchSize: number, scoreBatch: (batch: readonly ScoreInput[]) => torch.Tensor): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < inputs.length; i += batchSize) {
    const batch = inputs.slice(i, i + batchSize);
    out.push(...torch.tidy(() => scoreBatch(batch).float().cpu().toArray()));
    await new Promise((r) => setImmediate(r)); // let progress output and signals through
  }
  return out;
}

/** The distinct prompts of a batch and, for each input, the index of its prompt. */
function distinctPrompts(batch: readonly ScoreInput[]): { prompts: string[]; index: number[] } {
  const prompts: string[] = [];
  const seen = new Map<string, number>();
  const index = batch.map(({ prompt }) => {
    let k = seen.get(prompt);
    if (k === undefined) {
      k = prompts.length;
      seen.set(prompt, k);
      prompts.push(prompt);
    }
    return k;
  });
  return { prompts, index };
}

/** transformers' tokenizer call with padding=True, truncation=True, max_length=77: ids and attention mask, padded to the longest. */
export function tokenizeLongest(tokenizer: CLIPTokenizer, prompts: string[], device: torch.Device): { ids: torch.Tensor; mask: torch.Tensor } {
  const batch = tokenizer.encodeBatch(prompts, { padding: 'longest' });
  return { ids: torch.tensor(batch.map((e) => e.inputIds), { dtype: 'int64', device }), mask: torch.tensor(batch.map((e) => e.attentionMask), { dtype: 'int64', device }) };
}

const NAMED_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };

/** html.unescape for the entities prompts carry (named: amp, lt, gt, quot, apos, nbsp; numeric: &#NN; and &#xHH;). */
export function htmlUnescape(text: string): string {
  return text.replace(/&(#\d+|#[xX][0-9a-fA-F]+|[a-zA-Z]+);/g, (m, e: string) => {
    if (e[0] === '#') {
      const code = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return Number.isFinite(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : m;
    }
    return NAMED_ENTITIES[e] ?? m;
  });
}

/**
 * open_clip's tokenize: basic_clean (html.unescape twice, after ftfy, which the tokenizer applies),
 * then [sot] + tokens + [eot], cut to the context length (eot kept last), padded with 0.
 */
export function tokenizeOpenClip(tokenizer: CLIPTokenizer, prompts: string[], contextLength: number, device: torch.Device): torch.Tensor {
  const rows = prompts.map((p) => {
    const ids = tokenizer.encode(htmlUnescape(htmlUnescape(p)).trim(), { maxLength: contextLength, padding: false, truncation: true }).inputIds;
    return [...ids, ...new Array<number>(contextLength - ids.length).fill(0)];
  });
  return torch.tensor(rows, { dtype: 'int64', device });
}

/**
 * A transformers CLIPModel's prompt-image score: PickScore's logit_scale.exp() * cosine, or with
 * `scaled: false` the plain cosine (CLIPScore, as the open_clip `clip` scorer gives it).
 */
export class PickScoreScorer implements Scorer {
  constructor(readonly c: Common, readonly model: CLIPModel, readonly tokenizer: CLIPTokenizer, readonly o: { scaled?: boolean } = {}) {}
  get name(): ScorerName { return this.c.name; }
  get description(): string { return this.c.description; }

  /** Normalised image and text embeddings of a batch (the parity checks read these). */
  embed(batch: readonly ScoreInput[]): { image: torch.Tensor; text: torch.Tensor; index: number[] } {
    return torch.tidy(() => torch.noGrad(() => {
      const pixels = preprocessBatch(batch.map((b) => b.image), this.c.preprocess).to({ device: this.c.device, dtype: this.model.dtype });
      const image = torch.F.normalize(this.model.imageFeatures(pixels).float(), 2, -1);
      const { prompts, index } = distinctPrompts(batch);
      const { ids, mask } = tokenizeLongest(this.tokenizer, prompts, this.c.device);
      const text = torch.F.normalize(this.model.textFeatures(ids, { attentionMask: mask }).float(), 2, -1);
      return { image, text, index };
    }));
  }

  score(inputs: readonly ScoreInput[]): Promise<number[]> {
    return inBatches(inputs, this.c.batchSize, (batch) => {
      const { image, text, index } = this.embed(batch);
      const perImageText = text.indexSelect(0, torch.tensor(index, { dtype: 'int64', device: this.c.device }));
      const cosine = image.mul(perImageText).sum(-1);
      return this.o.scaled === false ? cosine : cosine.mul(this.model.logit_scale.float().exp());
    });
  }

  dispose(): void {
    this.model.dispose();
  }
}

export class OpenClipScorer implements Scorer {
  constructor(readonly c: Common, readonly model: OpenClipModel, readonly tokenizer: CLIPTokenizer) {}
  get name(): ScorerName { return this.c.name; }
  get description(): string { return this.c.description; }

  score(inputs: readonly ScoreInput[]): Promise<number[]> {
    return inBatches(inputs, this.c.batchSize, (batch) => torch.noGrad(() => {
      const pixels = preprocessBatch(batch.map((b) => b.image), this.c.preprocess).to({ device: this.c.device, dtype: this.model.dtype });
      const image = this.model.encodeImage(pixels, { normalize: true }).float();
      const { prompts, index } = distinctPrompts(batch);
      const tokens = tokenizeOpenClip(this.tokenizer, prompts, this.model.config.text.contextLength, this.c.device);
      const text = this.model.encodeText(tokens, { normalize: true }).float().indexSelect(0, torch.tensor(index, { dtype: 'int64', device: this.c.device }));
      return image.mul(text).sum(-1);
    }));
  }

  dispose(): void {
    this.model.dispose();
  }
}

export class AestheticsScorer implements Scorer {
  constructor(readonly c: Common, readonly clip: CLIPModel, readonly head: AestheticsHead) {}
  get name(): ScorerName { return this.c.name; }
  get description(): string { return this.c.description; }

  score(inputs: readonly ScoreInput[]): Promise<number[]> {
    return inBatches(inputs, this.c.batchSize, (batch) => torch.noGrad(() => {
      const pixels = preprocessBatch(batch.map((b) => b.image), this.c.preprocess).to({ device: this.c.device, dtype: this.clip.dtype });
      const embeds = this.clip.imageFeatures(pixels).float();
      return this.head.forward(embeds.div(embeds.norm(2, [-1], true))).flatten();
    }));
  }

  dispose(): void {
    this.clip.dispose();
    this.head.dispose();
  }
}
