// Training logs: metrics.jsonl (one JSON object per update), TensorBoard event files with the
// reference's scalar names, and at the end report.html (report.ts).
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../models/index.js';
import type { ResourceSummary } from './telemetry.js';
import { EventWriter } from './tensorboard.js';
import { renderReport } from './report.js';

export class MetricsLog {
  readonly jsonl: string;
  readonly #events: EventWriter | null;

  /** dir: the run's log folder (metrics.jsonl, event files); reportPath: where close() writes report.html. */
  constructor(readonly dir: string, tensorboard: boolean, readonly reportPath: string) {
    mkdirSync(dir, { recursive: true });
    this.jsonl = join(dir, 'metrics.jsonl');
    this.#events = tensorboard ? new EventWriter(dir) : null;
  }

  log(step: number, row: Record<string, number>): void {
    appendFileSync(this.jsonl, `${JSON.stringify({ ...row, time: Date.now() / 1000 })}\n`);
    const { step: _s, ...scalars } = row;
    void _s;
    this.#events?.scalars(step, scalars);
  }

  /** Writes report.html (report.ts). */
  close(history: Record<string, number>[], resources?: ResourceSummary, badRows?: Record<string, number>, settings?: Record<string, unknown>): string {
    writeFileAtomic(this.reportPath, renderReport({ history, resources, badRows, settings }));
    return this.reportPath;
  }
}
