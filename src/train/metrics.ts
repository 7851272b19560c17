// Training logs: metrics.jsonl (one JSON object per update), TensorBoard event files with the
// reference's scalar names, and at the end report.html with the loss and accuracy curves as inline
// SVG (a self-contained page: no scripts, no network).
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../models/index.js';
import type { ResourceSummary } from './telemetry.js';
import { EventWriter } from './tensorboard.js';

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

  /** Writes report.html. */
  close(history: Record<string, number>[], resources?: ResourceSummary, badRows?: Record<string, number>): string {
    writeFileAtomic(this.reportPath, renderReport(history, resources, badRows));
    return this.reportPath;
  }
}

function chart(title: string, rows: Record<string, number>[], key: string, color: string): string {
  const pts = rows.filter((r) => Number.isFinite(r[key])).map((r) => [r.step!, r[key]!] as const);
  if (pts.length === 0) return '';
  const w = 560;
  const h = 220;
  const pad = 40;
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs) || 1];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const X = (x: number) => pad + ((x - x0) / Math.max(1e-12, x1 - x0)) * (w - 2 * pad);
  const Y = (y: number) => h - pad - ((y - y0) / (y1 - y0)) * (h - 2 * pad);
  const path = pts.map((p, i) => `${i ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ');
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  return `<figure><figcaption>${esc(title)}</figcaption><svg width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" aria-label="${esc(title)}">
<rect x="${pad}" y="${pad / 2}" width="${w - 2 * pad}" height="${h - 1.5 * pad}" fill="#fafafa" stroke="#ccc"/>
<path d="${path}" fill="none" stroke="${color}" stroke-width="2"/>
<text x="${pad}" y="${h - 10}" font-size="11">step ${x0}</text><text x="${w - pad}" y="${h - 10}" font-size="11" text-anchor="end">step ${x1}</text>
<text x="4" y="${Y(y1) + 4}" font-size="11">${y1.toPrecision(3)}</text><text x="4" y="${Y(y0) + 4}" font-size="11">${y0.toPrecision(3)}</text>
</svg></figure>`;
}

export function renderReport(history: Record<string, number>[], resources?: ResourceSummary, badRows: Record<string, number> = {}): string {
  const last = history[history.length - 1] ?? {};
  const cell = (v: number) => (Number.isInteger(v) ? String(v) : v.toPrecision(5));
  const summary = Object.entries(last).map(([k, v]) => `<tr><th>${k}</th><td>${cell(v)}</td></tr>`).join('');
  const table = (title: string, o: Record<string, number>) => `<h2>${title}</h2><table>${Object.entries(o).map(([k, v]) => `<tr><th>${k}</th><td>${cell(v)}</td></tr>`).join('')}</table>`;
  const res = resources ? table('Resources', resources as unknown as Record<string, number>) : '';
  const bad = Object.keys(badRows).length ? table('Unusable rows (listed in bad_rows.jsonl)', badRows) : '<h2>Unusable rows</h2><p>none</p>';
  // implicit accuracy per timestep quarter, over the run's updates (each update's share counts once)
  const quarters = [...new Set(history.flatMap((r) => Object.keys(r).filter((k) => k.startsWith('implicit_acc_t'))))];
  const byTimestep = quarters.length ? table('Implicit accuracy by timestep (mean over updates)', Object.fromEntries(quarters.map((k) => {
    const v = history.map((r) => r[k]).filter((x): x is number => Number.isFinite(x));
    return [k, v.reduce((a, b) => a + b, 0) / v.length];
  }))) : '';
  const spikes = history.filter((r) => r.loss_spike).map((r) => r.step);
  const spikeList = `<h2>Loss spikes</h2><p>${spikes.length ? `at steps ${spikes.join(', ')} (the log names each one's dataset rows)` : 'none'}</p>`;
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>diffusion-dpo training report</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}figure{display:inline-block;margin:1em}table{border-collapse:collapse}th,td{padding:2px 10px;text-align:left;border-bottom:1px solid #eee}</style></head>
<body><h1>Training report</h1><p>${history.length} optimizer updates.</p><table>${summary}</table>${res}${bad}${byTimestep}${spikeList}
${chart('train_loss', history, 'train_loss', '#c0392b')}
${chart('implicit_acc_accumulated', history, 'implicit_acc_accumulated', '#2471a3')}
${chart('model_mse_unaccumulated', history, 'model_mse_unaccumulated', '#7d3c98')}
${chart('reward_margin_mean', history, 'reward_margin_mean', '#d35400')}
${chart('grad_norm', history, 'grad_norm', '#34495e')}
${chart('lr', history, 'lr', '#1e8449')}
${chart('pairs_per_s', history, 'pairs_per_s', '#7f8c8d')}
</body></html>
`;
}
