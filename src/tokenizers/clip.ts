// CLIPTokenizer (transformers 4.30, the "slow" Python tokenizer that diffusers pipelines and the
// reference train.py use): text clean-up (ftfy, or BasicTokenizer when ftfy is absent), the CLIP
// pre-split regex, byte-level BPE with `</w>` word ends, <|startoftext|>/<|endoftext|>, truncation
// and padding to 77. Reads vocab.json + merges.txt, or tokenizer.json.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { basicTokenize } from './basic.js';
import { fixText } from './ftfy.js';
import { UserError } from '../util/errors.js';

/** GPT-2's reversible byte -> printable character table (index = byte value). */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const table: string[] = new Array(256);
  bs.forEach((b, i) => (table[b] = String.fromCodePoint(cs[i]!)));
  return table;
}
const BYTE_ENCODER = bytesToUnicode();

// CLIP's pre-tokenisation pattern, case-insensitive as in transformers. \s here is Unicode White_Space
// (the `regex` module's), which JS's \s matches except for U+FEFF (ftfy has removed it by then).
const PAT = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;
/** Python re's \s (str.isspace), used by whitespace_clean. */
const PY_SPACES = /[\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/g;

export interface ClipTokenizerOptions {
  /** Clean text with ftfy's fixes (transformers does when ftfy is installed; default true). */
  ftfy?: boolean;
  modelMaxLength?: number;
}

export interface Encoding {
  inputIds: number[];
  attentionMask: number[];
}

export class CLIPTokenizer {
  readonly encoder: Map<string, number>;
  readonly decoder: Map<number, string>;
  readonly bpeRanks: Map<string, number>;
  readonly bosToken = '<|startoftext|>';
  readonly eosToken = '<|endoftext|>';
  readonly padToken: string;
  readonly unkToken = '<|endoftext|>';
  readonly modelMaxLength: number;
  readonly useFtfy: boolean;
  readonly #cache = new Map<string, string[]>();
  readonly #specials: Set<string>;
  readonly #specialSplit: RegExp;

  constructor(vocab: Record<string, number>, merges: string[], o: ClipTokenizerOptions & { padToken?: string } = {}) {
    this.encoder = new Map(Object.entries(vocab));
    this.decoder = new Map([...this.encoder].map(([k, v]) => [v, k]));
    // CLIP uses the first 49152 - 256 - 2 merges (transformers' CLIPTokenizer slices them the same way).
    this.bpeRanks = new Map(merges.slice(0, 49152 - 256 - 2).map((m, i) => [m, i]));
    this.padToken = o.padToken ?? '<|endoftext|>';
    this.modelMaxLength = o.modelMaxLength ?? 77;
    this.useFtfy = o.ftfy ?? true;
    for (const t of [this.bosToken, this.eosToken, this.padToken]) {
      if (!this.encoder.has(t)) throw new UserError(`tokenizer vocabulary has no '${t}'`);
    }
    this.#specials = new Set([this.bosToken, this.eosToken, this.unkToken, this.padToken]);
    const escaped = [...this.#specials].sort((a, b) => b.length - a.length).map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    this.#specialSplit = new RegExp(`(${escaped.join('|')})`);
  }

  /** A tokenizer folder: vocab.json + merges.txt (or tokenizer.json), with tokenizer_config.json / special_tokens_map.json. */
  static fromFolder(folder: string, o: ClipTokenizerOptions = {}): CLIPTokenizer {
    const read = (f: string) => JSON.parse(readFileSync(join(folder, f), 'utf8')) as Record<string, unknown>;
    const tokenContent = (v: unknown): string | undefined => (typeof v === 'string' ? v : (v as { content?: string } | undefined)?.content);
    const special = existsSync(join(folder, 'special_tokens_map.json')) ? read('special_tokens_map.json') : {};
    const config = existsSync(join(folder, 'tokenizer_config.json')) ? read('tokenizer_config.json') : {};
    const padToken = tokenContent(special.pad_token) ?? tokenContent(config.pad_token);
    const modelMaxLength = typeof config.model_max_length === 'number' && config.model_max_length < 1e6 ? config.model_max_length : o.modelMaxLength;
    let vocab: Record<string, number>;
    let merges: string[];
    if (existsSync(join(folder, 'vocab.json')) && existsSync(join(folder, 'merges.txt'))) {
      vocab = read('vocab.json') as Record<string, number>;
      merges = readFileSync(join(folder, 'merges.txt'), 'utf8').trim().split('\n').slice(1);
    } else if (existsSync(join(folder, 'tokenizer.json'))) {
      const model = (read('tokenizer.json') as { model?: { vocab?: Record<string, number>; merges?: (string | [string, string])[] } }).model;
      if (!model?.vocab || !model.merges) throw new UserError(`${folder}/tokenizer.json has no BPE model`);
      vocab = model.vocab;
      merges = model.merges.map((m) => (Array.isArray(m) ? m.join(' ') : m));
    } else {
      throw new UserError(`${folder}: no tokenizer files (expected vocab.json + merges.txt, or tokenizer.json)`);
    }
    return new CLIPTokenizer(vocab, merges, { ...o, padToken, modelMaxLength });
  }

  /** Forgets the memoised BPE splits (for benchmarks of the uncached path). */
  clearCache(): void {
    this.#cache.clear();
  }

  get bosTokenId(): number { return this.encoder.get(this.bosToken)!; }
  get eosTokenId(): number { return this.encoder.get(this.eosToken)!; }
  get padTokenId(): number { return this.encoder.get(this.padToken)!; }

  #bpe(token: string): string[] {
    const cached = this.#cache.get(token);
    if (cached) return cached;
    const chars = [...token];
    let word = [...chars.slice(0, -1), `${chars[chars.length - 1]}</w>`];
    while (word.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i < word.length - 1; i++) {
        const r = this.bpeRanks.get(`${word[i]} ${word[i + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      const first = word[best]!;
      const second = word[best + 1]!;
      const merged: string[] = [];
      for (let i = 0; i < word.length;) {
        if (i < word.length - 1 && word[i] === first && word[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else {
          merged.push(word[i]!);
          i += 1;
        }
      }
      word = merged;
    }
    if (this.#cache.size < 100_000) this.#cache.set(token, word);
    return word;
  }

  /** Text without special tokens -> BPE tokens. */
  #tokenizeChunk(text: string): string[] {
    const cleaned = this.useFtfy
      ? fixText(text).replace(PY_SPACES, ' ').trim().toLowerCase()
      : basicTokenize(text).join(' ');
    const out: string[] = [];
    for (const m of cleaned.matchAll(PAT)) {
      const bytes = Buffer.from(m[0], 'utf8');
      let mapped = '';
      for (const b of bytes) mapped += BYTE_ENCODER[b];
      out.push(...this.#bpe(mapped));
    }
    return out;
  }

  /**
   * tok.tokenize(text): BPE strings. Special tokens written in the text (bos, eos, and the pad token,
   * which is "!" for SDXL's tokenizer_2) stay whole and are never cleaned or split, as transformers'
   * added-token trie does.
   */
  tokenize(text: string): string[] {
    const out: string[] = [];
    for (const part of text.split(this.#specialSplit)) {
      if (!part) continue;
      if (this.#specials.has(part)) out.push(part);
      else out.push(...this.#tokenizeChunk(part));
    }
    return out;
  }

  /** Ids with <|startoftext|> and <|endoftext|>, untruncated. */
  encodeUntruncated(text: string): number[] {
    const unk = this.encoder.get(this.unkToken)!;
    return [this.bosTokenId, ...this.tokenize(text).map((t) => this.encoder.get(t) ?? unk), this.eosTokenId];
  }

  /**
   * tok(text, padding="max_length", max_length, truncation=True): the content is cut to
   * maxLength - 2 before the special tokens are added, then padded with the pad token.
   */
  encode(text: string, o: { maxLength?: number; padding?: 'max_length' | 'longest' | false; truncation?: boolean } = {}): Encoding {
    const maxLength = o.maxLength ?? this.modelMaxLength;
    const full = this.encodeUntruncated(text);
    let ids = full;
    if (o.truncation ?? true) {
      if (full.length > maxLength) ids = [...full.slice(0, maxLength - 1), this.eosTokenId];
    }
    const attentionMask = ids.map(() => 1);
    if ((o.padding ?? 'max_length') === 'max_length') {
      while (ids.length < maxLength) {
        ids = [...ids, this.padTokenId];
        attentionMask.push(0);
      }
    }
    return { inputIds: ids, attentionMask };
  }

  /**
   * A batch, truncated to maxLength and padded to it (what SD pipelines and train.py feed the text
   * encoder), or with padding 'longest' to the batch's longest (tok(texts, padding=True), as the
   * reward models' processors call it; the attention mask marks the padding).
   */
  encodeBatch(texts: string[], o: { maxLength?: number; padding?: 'max_length' | 'longest' } = {}): Encoding[] {
    if ((o.padding ?? 'max_length') === 'max_length') return texts.map((t) => this.encode(t, { maxLength: o.maxLength, padding: 'max_length', truncation: true }));
    const encoded = texts.map((t) => this.encode(t, { maxLength: o.maxLength, padding: false, truncation: true }));
    const longest = Math.max(...encoded.map((e) => e.inputIds.length));
    return encoded.map((e) => {
      const pad = longest - e.inputIds.length;
      return { inputIds: [...e.inputIds, ...new Array<number>(pad).fill(this.padTokenId)], attentionMask: [...e.attentionMask, ...new Array<number>(pad).fill(0)] };
    });
  }

  decode(ids: number[], o: { skipSpecialTokens?: boolean } = {}): string {
    const specials = new Set([this.bosTokenId, this.eosTokenId, this.padTokenId]);
    const text = ids.filter((id) => !(o.skipSpecialTokens && specials.has(id))).map((id) => this.decoder.get(id) ?? '').join('');
    const byteDecoder = new Map(BYTE_ENCODER.map((c, b) => [c, b]));
    const bytes = [...text.replace(/<\/w>/g, ' ')].map((c) => byteDecoder.get(c) ?? 32);
    return Buffer.from(bytes).toString('utf8').trim();
  }
}
