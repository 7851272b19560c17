// Does a model still draw what it is asked for? The pixel-statistics classifier (classifier.ts) on
// each model's images of an eval run (eval.json), per model: the share whose colour, shape and both
// it reads as the prompt asked.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeRGB } from '../data/decode.js';
import type { EvalReport } from '../eval/report.js';
import { recognitionRate, type RecognitionRate } from './classifier.js';
import { allCaptions } from './shapes.js';

/** Recognition rates of every model of an eval run whose prompts are demo captions. */
export async function evalRecognition(evalDir: string, report: EvalReport): Promise<Record<string, RecognitionRate>> {
  const byCaption = new Map(allCaptions().map((c) => [c.caption, c]));
  const out: Record<string, RecognitionRate> = {};
  for (const m of report.models) {
    const items = [];
    for (const row of report.prompts) {
      const c = byCaption.get(row.prompt);
      if (!c) throw new Error(`eval prompt '${row.prompt}' is not a demo caption`);
      for (const img of row.images) items.push({ image: await decodeRGB(readFileSync(join(evalDir, img.files[m.label]!))), colour: c.colour, shape: c.shape });
    }
    out[m.label] = recognitionRate(items);
  }
  return out;
}
