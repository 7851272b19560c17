// A CLIP tokenizer for a closed vocabulary: the byte-level base alphabet (so any text still
// tokenizes) plus just enough BPE merges that every word of the vocabulary is one token. The files
// are the real vocab.json + merges.txt format, read by our CLIPTokenizer and by transformers'.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../models/loading.js';
import { bytesToUnicode, CLIPTokenizer } from '../tokenizers/clip.js';

const BOS = '<|startoftext|>';
const EOS = '<|endoftext|>';

/**
 * The vocabulary and merges. Merges are added one at a time (the first adjacent pair of a word that
 * is still split), each checked against BPE's lowest-rank-first order, so no merge for one word
 * can break another. The end-of-text token gets the highest id: CLIP pools the text at argmax(ids).
 */
export function wordLevelVocabulary(words: readonly string[]): { vocab: Record<string, number>; merges: string[] } {
  const vocab: Record<string, number> = {};
  bytesToUnicode().forEach((c, i) => { vocab[c] = i; vocab[`${c}</w>`] = 256 + i; });
  const merges: string[] = [];
  let next = 512;
  const withSpecials = () => ({ ...vocab, [BOS]: next, [EOS]: next + 1 });
  for (let guard = 0; guard < 10_000; guard++) {
    const tok = new CLIPTokenizer(withSpecials(), merges, { ftfy: false });
    const split = words.map((w) => tok.tokenize(w)).find((pieces) => pieces.length > 1);
    if (!split) return { vocab: withSpecials(), merges };
    const [a, b] = split as [string, string];
    merges.push(`${a} ${b}`);
    if (!(a + b in vocab)) vocab[a + b] = next++;
  }
  throw new Error('wordLevelVocabulary: the merges did not converge');
}

/** Writes tokenizer files (vocab.json, merges.txt, configs) for `words`, padding to `maxLength`. */
export function writeWordTokenizer(folder: string, words: readonly string[], maxLength: number): { vocabSize: number; bos: number; eos: number } {
  const { vocab, merges } = wordLevelVocabulary(words);
  mkdirSync(folder, { recursive: true });
  writeFileAtomic(join(folder, 'vocab.json'), JSON.stringify(vocab));
  writeFileAtomic(join(folder, 'merges.txt'), `#version: 0.2\n${merges.join('\n')}\n`);
  const special = { bos_token: BOS, eos_token: EOS, unk_token: EOS, pad_token: EOS };
  writeFileAtomic(join(folder, 'special_tokens_map.json'), JSON.stringify(special, null, 2));
  writeFileAtomic(join(folder, 'tokenizer_config.json'), JSON.stringify({ ...special, model_max_length: maxLength, tokenizer_class: 'CLIPTokenizer', do_lower_case: true }, null, 2));
  return { vocabSize: Object.keys(vocab).length, bos: vocab[BOS]!, eos: vocab[EOS]! };
}
