// eval.html: the report of `diffusion-dpo eval` as one page with no external resources (inline CSS,
// script and SVG). Images are linked by paths relative to the page, which sits beside their
// folders in the output folder (a Parti run has thousands; inlining them would make a page of
// gigabytes): move the folder as a whole. Sections: the summary per scorer, a win-rate plot with
// its intervals, a per-prompt table sortable by any column, and the gallery with every image's
// scores. The script also records how many images decoded (body[data-images-loaded]) and reports
// one that fails on the console, so a headless browser can check the page.
import type { EvalReport, ModelResult } from './report.js';
import { escapeHtml as escape, percent as pct } from '../util/html.js';

/** Scores: 4 decimals (PickScore ~21, HPS ~0.27, aesthetics ~5.5 and CLIP ~0.3 all read well). */
const num = (x: number) => x.toFixed(4);
/** An image path as a URL relative to the page (each segment encoded, '/' kept). */
const href = (path: string) => path.split(/[\\/]/).map(encodeURIComponent).join('/');
/** Gallery rows rendered before the others load lazily. */
const EAGER_ROWS = 24;

function summaryTable(r: EvalReport): string {
  const head = '<tr><th>scorer</th><th>model</th><th>mean</th><th>median</th><th>images</th><th>win rate vs base</th><th>interval</th><th>wins / ties / losses</th></tr>';
  const rows = r.scorers.flatMap((s) => r.models.map((m) => {
    const x: ModelResult = r.results[s.name]![m.label]!;
    const w = x.win_rate;
    return `<tr><td>${escape(s.name)}</td><td>${escape(m.label)}</td><td>${num(x.mean)}</td><td>${num(x.median)}</td><td>${x.images}</td>` +
      (w ? `<td><b>${pct(w.rate)}</b></td><td>${pct(w.low)} – ${pct(w.high)}</td><td>${w.wins} / ${w.ties} / ${w.losses}</td>` : '<td colspan="3">(the reference)</td>') + '</tr>';
  }));
  return `<table class="summary"><thead>${head}</thead><tbody>\n${rows.join('\n')}\n</tbody></table>`;
}

/** Win rates as points with their intervals as bars, 0..100%, a dashed line at 50%. */
function winRatePlot(r: EvalReport): string {
  const trained = r.models.slice(1);
  if (trained.length === 0) return '<p>No trained model: no win rates.</p>';
  const rows = r.scorers.flatMap((s) => trained.map((m) => ({ s: s.name, m: m.label, w: r.results[s.name]![m.label]!.win_rate! })));
  const left = 260;
  const width = 420;
  const rowH = 26;
  const top = 24;
  const h = top + rows.length * rowH + 28;
  const x = (v: number) => (left + v * width).toFixed(1);
  const grid = [0, 0.25, 0.5, 0.75, 1].map((t) =>
    `<line x1="${x(t)}" y1="${top - 6}" x2="${x(t)}" y2="${h - 24}" class="${t === 0.5 ? 'half' : 'grid'}"/>` +
    `<text x="${x(t)}" y="${h - 8}" text-anchor="middle">${t * 100}%</text>`).join('');
  const marks = rows.map((row, i) => {
    const y = top + i * rowH + rowH / 2;
    const { rate, low, high } = row.w;
    return `<g><title>${escape(`${row.s}, ${row.m}: ${pct(rate)} (${pct(low)} – ${pct(high)})`)}</title>` +
      `<text x="${left - 10}" y="${y + 4}" text-anchor="end">${escape(row.s)} · ${escape(row.m)}</text>` +
      `<line x1="${x(low)}" y1="${y}" x2="${x(high)}" y2="${y}" class="ci"/>` +
      `<line x1="${x(low)}" y1="${y - 6}" x2="${x(low)}" y2="${y + 6}" class="ci"/>` +
      `<line x1="${x(high)}" y1="${y - 6}" x2="${x(high)}" y2="${y + 6}" class="ci"/>` +
      `<circle cx="${x(rate)}" cy="${y}" r="5" class="rate"/>` +
      `<text x="${left + width + 12}" y="${y + 4}">${pct(rate)}</text></g>`;
  }).join('\n');
  return `<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="${left + width + 70}" height="${h}" viewBox="0 0 ${left + width + 70} ${h}" role="img" aria-label="win rates over the base with their intervals">
${grid}
${marks}
</svg>`;
}

/** One row per prompt: each model's mean score per scorer, each trained model's win rate; headers sort. */
function promptTable(r: EvalReport): string {
  const trained = r.models.slice(1);
  const cols = r.scorers.flatMap((s) => [
    ...r.models.map((m) => ({ title: `${escape(s.name)}<br><small>${escape(m.label)}</small>`, value: (i: number) => r.prompts[i]!.mean[s.name]![m.label]!, fmt: num })),
    ...trained.map((m) => ({ title: `${escape(s.name)} win<br><small>${escape(m.label)}</small>`, value: (i: number) => r.prompts[i]!.win_rate[s.name]![m.label]!, fmt: pct })),
  ]);
  const head = `<tr><th data-type="number" title="sort">#</th><th data-type="text" title="sort">prompt</th>${cols.map((c) => `<th data-type="number" title="sort">${c.title}</th>`).join('')}</tr>`;
  const body = r.prompts.map((p, i) => `<tr><td data-value="${p.index}">${p.index}</td><td class="prompt"><a href="#p${p.index}">${escape(p.prompt)}</a></td>` +
    cols.map((c) => `<td data-value="${c.value(i)}">${c.fmt(c.value(i))}</td>`).join('') + '</tr>').join('\n');
  return `<table class="sortable" id="prompts"><thead>${head}</thead><tbody>\n${body}\n</tbody></table>`;
}

function gallery(r: EvalReport): string {
  let row = 0;
  return r.prompts.map((p) => {
    const seeds = p.images.map((im) => {
      const lazy = row++ >= EAGER_ROWS ? ' loading="lazy"' : '';
      const figures = r.models.map((m) => {
        const scores = r.scorers.map((s) => `<span>${escape(s.name)} ${num(im.scores[s.name]![m.label]!)}</span>`).join('');
        return `<figure><img src="${escape(href(im.files[m.label]!))}" alt="${escape(`${m.label}: ${p.prompt} (seed ${im.seed})`)}"${lazy}>` +
          `<figcaption><b>${escape(m.label)}</b>${scores}</figcaption></figure>`;
      }).join('');
      return `<div class="seed"><div class="seedlabel">seed ${im.seed}</div>${figures}</div>`;
    }).join('\n');
    return `<section class="prompt" id="p${p.index}"><h3>${p.index}. ${escape(p.prompt)}</h3>\n${seeds}\n</section>`;
  }).join('\n');
}

const SCRIPT = `
// sortable tables: a click on a header sorts by that column, a second click reverses
for (const table of document.querySelectorAll('table.sortable')) {
  const headers = [...table.tHead.rows[0].cells];
  headers.forEach((th, col) => th.addEventListener('click', () => {
    const up = th.dataset.dir !== 'asc';
    headers.forEach((h) => { delete h.dataset.dir; });
    th.dataset.dir = up ? 'asc' : 'desc';
    const key = (tr) => { const c = tr.cells[col]; return th.dataset.type === 'number' ? Number(c.dataset.value) : c.textContent.toLowerCase(); };
    const rows = [...table.tBodies[0].rows];
    rows.sort((a, b) => { const x = key(a); const y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1); });
    table.tBodies[0].append(...rows);
  }));
}
addEventListener('load', () => {
  const eager = [...document.images].filter((i) => i.loading !== 'lazy');
  document.body.dataset.imagesLoaded = eager.filter((i) => i.complete && i.naturalWidth > 0).length + '/' + eager.length;
});
`;

/** Registered first, so an image that fails to load is reported on the console (error events do not bubble). */
const ERROR_SCRIPT = `addEventListener('error', (e) => { if (e.target instanceof HTMLImageElement) console.error('image failed to load: ' + e.target.getAttribute('src')); }, true);`;

export function evalHtml(r: EvalReport): string {
  const title = `eval: ${r.models.map((m) => m.label).join(' vs ')}`;
  const settings = Object.entries(r.settings).map(([k, v]) => `<code>${escape(k)}=${escape(String(v))}</code>`).join(' ');
  const overridden = Object.entries(r.protocol.overridden);
  const protocol = `<b>${escape(r.protocol.name)}</b>: ${escape(r.protocol.description)}` +
    (overridden.length ? `; overridden by flags: ${overridden.map(([k, v]) => `<code>${escape(k)} ${escape(String(v.protocol))} → ${escape(String(v.used))}</code>`).join(' ')}` : '');
  const models = r.models.map((m) => `<li><b>${escape(m.label)}</b> (${m.kind}): <code>${escape(m.source)}</code></li>`).join('');
  const scorers = r.scorers.map((s) => `<li><b>${escape(s.name)}</b>: ${escape(s.description)}</li>`).join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<script>${ERROR_SCRIPT}</script>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
code { background: #f3f3f3; padding: 1px 4px; margin-right: 4px; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: right; vertical-align: top; }
th { background: #fafafa; }
td.prompt, th:nth-child(2) { text-align: left; max-width: 28rem; }
table.summary td:nth-child(-n+2), table.summary th:nth-child(-n+2) { text-align: left; }
table.sortable th { cursor: pointer; user-select: none; position: sticky; top: 0; }
table.sortable th[data-dir="asc"]::after { content: " \\25B2"; }
table.sortable th[data-dir="desc"]::after { content: " \\25BC"; }
svg.plot text { font-size: 12px; fill: #222; }
svg.plot line.grid { stroke: #ddd; }
svg.plot line.half { stroke: #888; stroke-dasharray: 4 3; }
svg.plot line.ci { stroke: #1f5fa8; stroke-width: 2; }
svg.plot circle.rate { fill: #1f5fa8; }
section.prompt { margin: 1rem 0 1.5rem; }
section.prompt h3 { font-weight: 500; font-size: 1rem; }
div.seed { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; margin-bottom: 8px; }
div.seedlabel { width: 4.5rem; color: #666; font-size: 0.85rem; }
figure { margin: 0; width: 256px; }
figure img { display: block; width: 256px; height: auto; background: #eee; }
figcaption { font-size: 0.8rem; }
figcaption span { display: block; color: #444; }
</style></head>
<body>
<h1>${escape(title)}</h1>
<p>Protocol ${protocol}.</p>
<p>${settings}</p>
<h2>Models</h2><ul>${models}</ul>
<h2>Scorers</h2><ul>${scorers}</ul>
<h2>Summary</h2>
${summaryTable(r)}
<p><small>Win rate: ${escape(r.statistics.win_rate)}. Interval: ${escape(r.statistics.interval)}.</small></p>
<h2>Win rate over the base</h2>
${winRatePlot(r)}
<h2>Per prompt</h2>
<p><small>Mean over each prompt's seeds; click a header to sort.</small></p>
${promptTable(r)}
<h2>Images</h2>
<p><small>${escape(r.images)}</small></p>
${gallery(r)}
<script>${SCRIPT}</script>
</body></html>
`;
}
