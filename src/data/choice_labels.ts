// AI-feedback labels: a sidecar JSONL file beside a dataset (never written into it) that gives each
// kept pair a new label_0 from a reward model's scores, as train.py's --choice_model decides the
// preferred image (its scores instead of the human vote). The first line describes how the labels
// were made; then a line per row:
//   {"choice_labels": 1, "scorer": "...", "dataset": "...", "rows": N}
//   {"row": 12, "score_0": 21.3, "score_1": 20.9, "label_0": 1}
//   {"row": 13, "error": "undecodable_image: ..."}
// Equal scores are ties (label_0 0.5), which training removes as it removes the human split
// decisions. Lines are appended as rows are scored, so a stopped relabelling resumes where it
// stopped; a torn last line is ignored.
import { existsSync, readFileSync } from 'node:fs';
import type { PairRow, PairSource, RowMeta } from './record.js';
import { UserError } from '../util/errors.js';

export interface ChoiceLabelsHeader {
  choice_labels: 1;
  /** The scorer's description (model and processor). */
  scorer: string;
  /** The dataset the rows index (as given to relabel). */
  dataset: string;
  split: string;
  /** Kept rows to score. */
  rows: number;
}

export interface ChoiceLabels {
  file: string;
  header: ChoiceLabelsHeader;
  /** label_0 by raw row. */
  labels: Map<number, number>;
  /** Rows whose images could not be scored, with why. */
  errors: Map<number, string>;
}

/** The label of two scores: the better image is preferred; equal scores are a tie. */
export function labelOf(score0: number, score1: number): number {
  return score0 > score1 ? 1 : score0 < score1 ? 0 : 0.5;
}

export function readChoiceLabels(file: string): ChoiceLabels {
  if (!existsSync(file)) throw new UserError(`${file}: no such choice-labels file (diffusion-dpo relabel writes one)`);
  const lines = readFileSync(file, 'utf8').split('\n');
  let header: ChoiceLabelsHeader;
  try {
    header = JSON.parse(lines[0]!) as ChoiceLabelsHeader;
  } catch {
    throw new UserError(`${file}: not a choice-labels file (its first line is not the JSON header relabel writes)`);
  }
  if (header.choice_labels !== 1) throw new UserError(`${file}: not a choice-labels file (no "choice_labels": 1 header)`);
  const labels = new Map<number, number>();
  const errors = new Map<number, string>();
  lines.slice(1).forEach((line, i) => {
    if (!line.trim()) return;
    let o: { row?: unknown; label_0?: unknown; error?: unknown };
    try {
      o = JSON.parse(line) as typeof o;
    } catch {
      // a torn last line (a stopped relabel); anywhere else the file is damaged
      if (i === lines.length - 2 || (i === lines.length - 3 && lines[lines.length - 1] === '')) return;
      throw new UserError(`${file}:${i + 2}: not a JSON line`);
    }
    if (!Number.isInteger(o.row)) throw new UserError(`${file}:${i + 2}: no row id`);
    if (typeof o.error === 'string') errors.set(o.row as number, o.error);
    else if (o.label_0 === 0 || o.label_0 === 0.5 || o.label_0 === 1) labels.set(o.row as number, o.label_0);
    else throw new UserError(`${file}:${i + 2}: label_0 must be 0, 0.5 or 1`);
  });
  return { file, header, labels, errors };
}

/**
 * A source whose pairs carry the sidecar's labels instead of their own. A row without one (a human
 * split decision, which relabel does not score, or a row whose images could not be scored) reads as
 * a tie, which the dataset removes; whether every row that should have a label has one is checked
 * before training (missingChoiceLabels).
 */
export class RelabelledSource implements PairSource {
  constructor(readonly inner: PairSource, readonly choice: ChoiceLabels) {}
  get description(): string {
    return `${this.inner.description}, labels from ${this.choice.header.scorer} (${this.choice.file})`;
  }
  get pairs(): boolean {
    return this.inner.pairs;
  }
  get size(): number {
    return this.inner.size;
  }
  #relabel<T extends RowMeta>(row: T, i: number): T {
    const l = this.choice.labels.get(i) ?? 0.5;
    return { ...row, label0: l, label1: 1 - l };
  }
  async scanMeta(): Promise<RowMeta[]> {
    return (await this.inner.scanMeta()).map((m, i) => this.#relabel(m, i));
  }
  async read(indices: number[]): Promise<PairRow[]> {
    return (await this.inner.read(indices)).map((r, k) => this.#relabel(r, indices[k]!));
  }
}

/** The rows among `kept` (a dataset's rows under its human labels) that the sidecar neither labels nor reports unscorable. */
export function missingChoiceLabels(choice: ChoiceLabels, kept: readonly number[]): number[] {
  return kept.filter((r) => !choice.labels.has(r) && !choice.errors.has(r));
}
