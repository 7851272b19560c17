// Relabelling a preference dataset with a reward model (AI feedback): both images of every kept
// pair scored with the pair's caption, the labels appended to a sidecar (src/data/choice_labels.ts)
// a batch at a time, so a stopped run resumes with the rows it has not scored. The dataset's own
// files are never written.
import { appendFileSync, existsSync, readFileSync, renameSync, truncateSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { decodeForScoring } from '../data/decode.js';
import type { PreferenceDataset } from '../data/dataset.js';
import { labelOf, readChoiceLabels, type ChoiceLabelsHeader } from '../data/choice_labels.js';
import type { RawImage } from '../data/pil_resize.js';
import { UserError } from '../util/errors.js';
import type { ScoreInput, Scorer } from './types.js';

export interface RelabelResult {
  file: string;
  /** Rows scored now, rows a previous run had scored, rows that could not be scored (now). */
  scored: number;
  resumed: number;
  errors: number;
  /** Of all labelled rows in the file: how many changed their preferred image, and ties. */
  flipped: number;
  ties: number;
}

export interface RelabelOptions {
  dataset: PreferenceDataset;
  scorer: Scorer;
  file: string;
  /** How the dataset was named (recorded and checked on resume). */
  datasetName: string;
  split: string;
  /** Pairs per scorer call (two images each). */
  batchSize: number;
  onProgress?: (done: number, total: number) => void;
}

function caption(c: string | string[] | null): string | null {
  if (c === null) return null;
  return Array.isArray(c) ? (c[0] ?? null) : c;
}

export async function relabelDataset(o: RelabelOptions): Promise<RelabelResult> {
  const header: ChoiceLabelsHeader = { choice_labels: 1, scorer: o.scorer.description, dataset: o.datasetName, split: o.split, rows: o.dataset.length };
  const done = new Set<number>();
  if (existsSync(o.file)) {
    const prior = readChoiceLabels(o.file);
    const h = prior.header;
    if (h.scorer !== header.scorer || h.dataset !== header.dataset || h.split !== header.split) {
      throw new UserError(`${o.file} holds labels of ${h.scorer} for ${h.dataset} (${h.split}); this run would write ${header.scorer} for ${header.dataset} (${header.split}): give another --output`);
    }
    for (const r of [...prior.labels.keys(), ...prior.errors.keys()]) done.add(r);
    // a stopped run may have left half a line: cut it before appending, or it would sit mid-file
    const text = readFileSync(o.file);
    if (text.length && text[text.length - 1] !== 0x0a) truncateSync(o.file, text.lastIndexOf(0x0a) + 1);
  } else {
    // the header is written whole before any row (a temp file renamed)
    const tmp = join(dirname(o.file), `.${basename(o.file)}.tmp-${process.pid}`);
    writeFileSync(tmp, JSON.stringify(header) + '\n');
    renameSync(tmp, o.file);
  }
  const todo = o.dataset.indices.filter((r) => !done.has(r));
  const resumed = o.dataset.length - todo.length;
  let scored = 0;
  let errors = 0;
  for (let i = 0; i < todo.length; i += o.batchSize) {
    const rows = todo.slice(i, i + o.batchSize);
    const read = await o.dataset.source.read(rows).catch(() => null);
    const lines: string[] = [];
    const inputs: ScoreInput[] = [];
    const scoredRows: number[] = [];
    for (const [k, row] of rows.entries()) {
      const r = read?.[k];
      const text = r ? caption(r.caption) : null;
      if (!r || text === null) {
        lines.push(JSON.stringify({ row, error: r ? 'null_caption' : 'unreadable_row' }));
        errors++;
        continue;
      }
      let images: RawImage[];
      try {
        images = await Promise.all([r.image0, r.image1].map((img) => {
          if (!(img instanceof Uint8Array)) throw new UserError(`missing_image: ${img.missing}`);
          return decodeForScoring(img);
        }));
      } catch (e) {
        lines.push(JSON.stringify({ row, error: (e as Error).message.split('\n')[0] }));
        errors++;
        continue;
      }
      inputs.push({ image: images[0]!, prompt: text }, { image: images[1]!, prompt: text });
      scoredRows.push(row);
    }
    const scores = inputs.length ? await o.scorer.score(inputs) : [];
    scoredRows.forEach((row, k) => {
      const [s0, s1] = [scores[2 * k]!, scores[2 * k + 1]!];
      lines.push(JSON.stringify({ row, score_0: s0, score_1: s1, label_0: labelOf(s0, s1) }));
    });
    scored += scoredRows.length;
    if (lines.length) appendFileSync(o.file, lines.join('\n') + '\n');
    o.onProgress?.(resumed + Math.min(todo.length, i + o.batchSize), o.dataset.length);
  }
  // what the labels changed, over the whole file
  const final = readChoiceLabels(o.file);
  const meta = await o.dataset.source.scanMeta();
  let flipped = 0;
  let ties = 0;
  for (const [row, l] of final.labels) {
    if (l === 0.5) ties++;
    else if (l !== meta[row]?.label0) flipped++;
  }
  return { file: o.file, scored, resumed, errors, flipped, ties };
}
