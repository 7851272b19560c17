// Scoring a list of image files with one scorer: decoded as `score` decodes them (decodeForScoring),
// a chunk at a time (a Parti run at 1024 px would not fit in memory decoded at once), every score
// checked to be a finite number.
import { readFileSync } from 'node:fs';
import { decodeForScoring } from '../data/decode.js';
import type { Scorer } from '../scoring/types.js';

export interface ImageToScore {
  file: string;
  prompt: string;
}

export async function scoreFiles(scorer: Scorer, items: readonly ImageToScore[], o: { chunk?: number; log?: (m: string) => void } = {}): Promise<number[]> {
  const chunk = o.chunk ?? 64;
  const out: number[] = [];
  for (let i = 0; i < items.length; i += chunk) {
    const part = items.slice(i, i + chunk);
    const inputs = await Promise.all(part.map(async (it) => ({ image: await decodeForScoring(readFileSync(it.file)), prompt: it.prompt })));
    const scores = await scorer.score(inputs);
    if (scores.length !== part.length) throw new Error(`scorer ${scorer.name} returned ${scores.length} scores for ${part.length} images`);
    scores.forEach((s, k) => {
      if (!Number.isFinite(s)) throw new Error(`scorer ${scorer.name} gave ${s} for ${part[k]!.file}`);
    });
    out.push(...scores);
    o.log?.(`${out.length}/${items.length} images`);
  }
  return out;
}
