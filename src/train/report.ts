// report.html: a training run for a reader who has not seen one before. Each curve is drawn raw
// (faint) and smoothed (TensorBoard's debiased exponential moving average), on real axes with
// ticks at round numbers, with the 0.5 chance line on implicit accuracy, and a sentence on what
// the metric means and what a healthy run looks like. The run's settings, the resources, the
// unusable rows and the loss spikes follow; an evaluation after training adds its section at the
// end (report_eval.ts). A self-contained page: no scripts, no network.
import { escapeHtml as esc } from '../util/html.js';
import type { ResourceSummary } from './telemetry.js';

interface MetricSpec {
  key: string;
  title: string;
  color: string;
  explain: string;
  /** A horizontal reference line (implicit accuracy's chance level). */
  reference?: { y: number; label: string };
  log?: boolean;
}

const METRICS: MetricSpec[] = [
  { key: 'train_loss', title: 'Loss (train_loss)', color: '#c0392b',
    explain: 'The objective, averaged over the update. Diffusion-DPO starts at log 2 ≈ 0.693 (the model equals its reference) and a healthy run drifts slowly below it; a fast fall towards 0 with a large β often means the pairs are being memorised, a rise or jumps mean instability.' },
  { key: 'implicit_acc_accumulated', title: 'Implicit accuracy', color: '#2471a3', reference: { y: 0.5, label: 'chance 0.5' },
    explain: 'The share of pairs on which the model, relative to its reference, denoises the preferred image better than the dispreferred one. 0.5 is chance; a run that learns the preference climbs above the line and stays there.' },
  { key: 'reward_margin_mean', title: 'Implicit reward margin (mean)', color: '#d35400', reference: { y: 0, label: '0' },
    explain: 'How much more the model favours the preferred images than the reference does (β·(−½Δ)); it starts at 0 and should grow. Flat at 0 means the model has not moved from the reference.' },
  { key: 'model_mse_unaccumulated', title: 'Denoising error (model_mse)', color: '#7d3c98',
    explain: 'The trained model\'s noise-prediction error. It should stay close to the reference\'s (ref_mse in the logs): preference training reorders what the model prefers, it must not make it a worse denoiser; a steady rise is a sign of collapse.' },
  { key: 'grad_norm', title: 'Gradient norm (before clipping)', color: '#34495e', log: true,
    explain: 'The size of each update\'s gradient before --max_grad_norm clips it. Isolated spikes mark unstable updates (the log names their rows); a steady climb suggests a learning rate too high for β.' },
  { key: 'lr', title: 'Learning rate', color: '#1e8449',
    explain: 'The schedule\'s learning rate at each update (the reference\'s recipe warms up linearly, then holds it constant).' },
  { key: 'pairs_per_s', title: 'Throughput (pairs/s)', color: '#7f8c8d',
    explain: 'Pairs trained per second over every process; dips usually mean the data loader or a checkpoint save kept the device waiting (data_wait_share in the logs).' },
];


/** Ticks at round numbers (1, 2 or 5 × 10^k apart) covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, target = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : Number(v.toPrecision(12)));
  return out;
}

/** TensorBoard's smoothing: an exponential moving average debiased for its start. */
export function smooth(values: number[], weight: number): number[] {
  let last = 0;
  let n = 0;
  return values.map((v) => {
    last = last * weight + (1 - weight) * v;
    n++;
    return last / (1 - weight ** n);
  });
}

function label(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(1) : String(Number(v.toPrecision(4)));
}

function chart(spec: MetricSpec, rows: Record<string, number>[]): string {
  const pts = rows.filter((r) => Number.isFinite(r[spec.key]) && (!spec.log || r[spec.key]! > 0)).map((r) => [r.step!, r[spec.key]!] as const);
  if (pts.length === 0) return '';
  const [w, h, left, right, top, bottom] = [560, 240, 58, 16, 14, 36];
  const f = (v: number) => (spec.log ? Math.log10(v) : v);
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => f(p[1]));
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys, ...(spec.reference ? [f(spec.reference.y)] : [])), Math.max(...ys, ...(spec.reference ? [f(spec.reference.y)] : []))];
  if (y0 === y1) [y0, y1] = [y0 - Math.max(1e-9, Math.abs(y0) * 0.1), y1 + Math.max(1e-9, Math.abs(y1) * 0.1)];
  const margin = (y1 - y0) * 0.05;
  [y0, y1] = [y0 - margin, y1 + margin];
  const X = (x: number) => left + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (w - left - right);
  const Y = (y: number) => top + (1 - (y - y0) / (y1 - y0)) * (h - top - bottom);
  const line = (ps: (readonly [number, number])[]) => ps.map((p, i) => `${i ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ');
  const weight = pts.length < 8 ? 0 : Math.min(0.95, 0.6 + pts.length / 1000);
  const smoothed = smooth(ys, weight).map((y, i) => [xs[i]!, y] as const);
  const raw = ys.map((y, i) => [xs[i]!, y] as const);
  const yTicks = spec.log ? niceTicks(Math.floor(y0), Math.ceil(y1), 4).filter((t) => t >= y0 && t <= y1 && Number.isInteger(t)) : niceTicks(y0, y1);
  const xTicks = niceTicks(x0, x1 === x0 ? x0 + 1 : x1).filter((t) => Number.isInteger(t));
  const grid = yTicks.map((t) => `<line x1="${left}" x2="${w - right}" y1="${Y(t).toFixed(1)}" y2="${Y(t).toFixed(1)}" stroke="#eee"/>` +
    `<text x="${left - 6}" y="${(Y(t) + 4).toFixed(1)}" font-size="11" text-anchor="end">${esc(label(spec.log ? 10 ** t : t))}</text>`).join('');
  const xAxis = xTicks.map((t) => `<line x1="${X(t).toFixed(1)}" x2="${X(t).toFixed(1)}" y1="${h - bottom}" y2="${h - bottom + 4}" stroke="#999"/>` +
    `<text x="${X(t).toFixed(1)}" y="${h - bottom + 16}" font-size="11" text-anchor="middle">${t}</text>`).join('');
  const ref = spec.reference ? `<line x1="${left}" x2="${w - right}" y1="${Y(f(spec.reference.y)).toFixed(1)}" y2="${Y(f(spec.reference.y)).toFixed(1)}" stroke="#888" stroke-dasharray="5,4"/>` +
    `<text x="${w - right - 4}" y="${(Y(f(spec.reference.y)) - 4).toFixed(1)}" font-size="11" text-anchor="end" fill="#666">${esc(spec.reference.label)}</text>` : '';
  return `<figure><figcaption><b>${esc(spec.title)}</b>${spec.log ? ' (log scale)' : ''}</figcaption>
<svg width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" aria-label="${esc(spec.title)}">
<rect x="${left}" y="${top}" width="${w - left - right}" height="${h - top - bottom}" fill="#fcfcfc" stroke="#ccc"/>${grid}${xAxis}${ref}
<path d="${line(raw)}" fill="none" stroke="${spec.color}" stroke-opacity="0.25" stroke-width="1"/>
<path d="${line(smoothed)}" fill="none" stroke="${spec.color}" stroke-width="2"/>
<text x="${(left + w - right) / 2}" y="${h - 4}" font-size="11" text-anchor="middle">optimizer update</text>
</svg><p class="explain">${esc(spec.explain)}</p></figure>`;
}

function table(title: string, o: Record<string, unknown>): string {
  const cell = (v: unknown) => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toPrecision(5)) : typeof v === 'string' ? v : JSON.stringify(v));
  return `<h2>${esc(title)}</h2><table>${Object.entries(o).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(cell(v))}</td></tr>`).join('')}</table>`;
}

/** Where an evaluation run after training puts its section (report_eval.ts). */
export const EVALUATION_SLOT = '<!-- evaluation -->';

export interface ReportInput {
  history: Record<string, number>[];
  /** The run's settings (model, data, objective, schedule, ...), as shown to the reader. */
  settings?: Record<string, unknown>;
  resources?: ResourceSummary;
  badRows?: Record<string, number>;
}

export function renderReport(r: ReportInput): string {
  const { history } = r;
  const last = history[history.length - 1] ?? {};
  const quarters = [...new Set(history.flatMap((row) => Object.keys(row).filter((k) => k.startsWith('implicit_acc_t'))))].sort((a, b) => Number(a.match(/\d+/)![0]) - Number(b.match(/\d+/)![0]));
  const byTimestep = quarters.length ? table('Implicit accuracy by timestep (mean over updates)', Object.fromEntries(quarters.map((k) => {
    const v = history.map((row) => row[k]).filter((x): x is number => Number.isFinite(x));
    return [k, v.reduce((a, b) => a + b, 0) / v.length];
  }))) : '';
  const spikes = history.filter((row) => row.loss_spike).map((row) => row.step);
  const bad = r.badRows && Object.keys(r.badRows).length ? table('Unusable rows (listed in bad_rows.jsonl)', r.badRows) : '<h2>Unusable rows</h2><p>none</p>';
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>diffusion-dpo training report</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1250px}figure{display:inline-block;margin:1em;vertical-align:top;width:560px}
figcaption{margin-bottom:4px}.explain{font-size:13px;color:#444;margin:4px 0 0}table{border-collapse:collapse;margin-bottom:1em}
th,td{padding:2px 10px;text-align:left;border-bottom:1px solid #eee;font-size:14px}h2{margin-top:1.5em}</style></head>
<body><h1>Training report</h1>
<p>${history.length} optimizer updates. Each curve shows the raw values (faint) and a smoothed line (an exponential moving average, as TensorBoard draws it).</p>
${METRICS.map((m) => chart(m, history)).join('\n')}
${r.settings ? table('Settings', r.settings) : ''}
${table('Last update', last)}${byTimestep}
<h2>Loss spikes</h2><p>${spikes.length ? `at steps ${spikes.join(', ')} (the log names each one's dataset rows)` : 'none'}</p>
${bad}${r.resources ? table('Resources', r.resources as unknown as Record<string, unknown>) : ''}
${EVALUATION_SLOT}
</body></html>
`;
}
