// The rows a run could not use: each one's id, reason and detail appended to
// <output_dir>/bad_rows.jsonl as it is found (the format --exclude_rows reads back), counts by
// reason for the progress line, the metrics and the summary, and the limit on their share: a
// dataset where many rows are unusable is broken or misread (wrong columns, a damaged shard), and
// training on what is left would quietly change the data.
import { appendFileSync } from 'node:fs';
import type { BadReason, BadRow } from '../data/record.js';
import { UserError } from '../util/errors.js';

/** Rows read before the share of bad ones is judged (a few early bad rows prove little). */
const MIN_ROWS_JUDGED = 100;

export class BadDataError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'BadDataError';
  }
}

export class BadRowLog {
  readonly counts: Partial<Record<BadReason, number>> = {};
  total = 0;

  constructor(readonly file: string, readonly maxFraction: number) {}

  record(b: BadRow): void {
    appendFileSync(this.file, `${JSON.stringify(b)}\n`);
    this.counts[b.reason] = (this.counts[b.reason] ?? 0) + 1;
    this.total++;
  }

  describe(): string {
    return Object.entries(this.counts).map(([k, v]) => `${k} ${v}`).join(', ');
  }

  /** Throws when more than maxFraction of `seen` rows were bad (judged once enough rows were read, or at once with `final`). */
  check(bad: number, seen: number, what: string, final = false): void {
    if (seen === 0 || (!final && seen < MIN_ROWS_JUDGED) || bad / seen <= this.maxFraction) return;
    throw new BadDataError(`${bad} of ${seen} ${what} were unusable (${this.describe()}), more than --max_bad_fraction ${this.maxFraction}. ` +
      `Their ids and reasons are in ${this.file}; 'diffusion-dpo data SOURCE --verify --write_exclude FILE' finds every bad row ` +
      "ahead of a run, and 'train --exclude_rows FILE' leaves them out");
  }
}
