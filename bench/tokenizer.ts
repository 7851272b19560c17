// Tokenizer throughput: prompts/s of CLIPTokenizer.encode (ftfy clean-up, BPE, padding to 77) on
// the fixtures' 47 prompts, with a cold BPE cache (a fresh tokenizer per pass) and a warm one.
//   node dist/bench/tokenizer.js
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLIPTokenizer } from '../src/tokenizers/clip.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixtures = process.env.FIXTURES_DIR ?? join(root, '..', 'shared', 'fixtures');
const prompts = (JSON.parse(readFileSync(join(fixtures, 'tokenizer_cases.json'), 'utf8')) as { cases: { prompt: string }[] }).cases.map((c) => c.prompt);
const folder = join(fixtures, 'tokenizer');

function rate(tok: CLIPTokenizer, passes: number, cold: boolean): number {
  let best = 0;
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    let n = 0;
    for (let p = 0; p < passes; p++) {
      if (cold) tok.clearCache();
      for (const prompt of prompts) {
        tok.encode(prompt);
        n++;
      }
    }
    best = Math.max(best, n / ((performance.now() - t0) / 1000));
  }
  return best;
}

const shared = CLIPTokenizer.fromFolder(folder);
const load0 = performance.now();
CLIPTokenizer.fromFolder(folder);
const loadMs = performance.now() - load0;
console.log(`CLIPTokenizer: load ${loadMs.toFixed(0)} ms (vocab.json + merges.txt)`);
console.log(`  warm BPE cache : ${rate(shared, 200, false).toFixed(0)} prompts/s`);
console.log(`  cold BPE cache : ${rate(shared, 50, true).toFixed(0)} prompts/s (cache cleared every 47 prompts)`);
