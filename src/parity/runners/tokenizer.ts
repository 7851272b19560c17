// tokenizer_cases.json: CLIPTokenizer ids, masks and BPE tokens for 47 prompts, with and without
// ftfy, for the SD tokenizer and SDXL's tokenizer_2. Every value must match exactly.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLIPTokenizer } from '../../tokenizers/clip.js';
import type { Comparison } from '../compare.js';

interface Variant {
  input_ids: number[];
  attention_mask: number[];
  tokens: string[];
  untruncated_ids: number[];
}
type TokenizerCase = { prompt: string } & Record<string, Variant | unknown>;

const VARIANTS: [string, string, boolean][] = [
  ['tokenizer', 'tokenizer', true],
  ['tokenizer_no_ftfy', 'tokenizer', false],
  ['tokenizer_2', 'tiny-sdxl/tokenizer_2', true],
  ['tokenizer_2_no_ftfy', 'tiny-sdxl/tokenizer_2', false],
];

function exact(name: string, ok: boolean, mismatches: number): Comparison {
  return { name, maxAbs: mismatches, maxRel: mismatches, usage: ok ? 0 : Infinity, tolerance: { atol: 0, rtol: 0 }, ok };
}

export function runTokenizerCases(root: string, file = 'tokenizer_cases.json'): Comparison[] {
  const cases = (JSON.parse(readFileSync(join(root, file), 'utf8')) as { cases: TokenizerCase[] }).cases;
  const out: Comparison[] = [];
  for (const [variant, folder, ftfy] of VARIANTS) {
    const tok = CLIPTokenizer.fromFolder(join(root, folder), { ftfy });
    cases.forEach((c, i) => {
      const want = c[variant] as Variant;
      const enc = tok.encode(c.prompt);
      const tokens = tok.tokenize(c.prompt);
      const untruncated = tok.encodeUntruncated(c.prompt);
      const diff = (a: unknown[], b: unknown[]) => Math.max(a.length, b.length) - a.filter((x, k) => x === b[k]).length;
      const label = `${variant}[${i}] ${JSON.stringify(c.prompt.slice(0, 40))}`;
      const d = diff(enc.inputIds, want.input_ids) + diff(enc.attentionMask, want.attention_mask) + diff(tokens, want.tokens) + diff(untruncated, want.untruncated_ids);
      out.push(exact(label, d === 0, d));
    });
  }
  return out;
}
