// The evaluation section of report.html: what `eval` measured after training (eval.json), read by
// someone who has not seen an eval before: each scorer's win rate over the base with its interval,
// the means, any extra checks the caller ran (the demo's fidelity), and a grid of base against
// trained images for the same prompts and seeds. Images are inlined as data URIs, so the report
// stays one self-contained file.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EvalReport } from '../eval/report.js';
import { writeFileAtomic } from '../models/loading.js';
import { escapeHtml as esc, percent as pct, pngDataUri } from '../util/html.js';
import { EVALUATION_SLOT } from './report.js';

export interface EvaluationSectionOptions {
  /** Seeds per prompt shown in the grid (default 4). */
  seedsShown?: number;
  /** Extra tables: title -> rows (row name -> value). */
  checks?: { title: string; explain: string; rows: Record<string, string> }[];
  /** Sentences above the numbers (what was compared, on which prompts). */
  intro?: string;
}


export function evaluationSection(report: EvalReport, evalDir: string, o: EvaluationSectionOptions = {}): string {
  const base = report.models[0]!;
  const trained = report.models.slice(1);
  const rows: string[] = [];
  for (const s of report.scorers) {
    for (const m of trained) {
      const r = report.results[s.name]![m.label]!;
      const w = r.win_rate!;
      rows.push(`<tr><td>${esc(s.name)}</td><td>${esc(m.label)}</td><td><b>${pct(w.rate)}</b></td><td>${pct(w.low)} – ${pct(w.high)}</td>` +
        `<td>${w.wins} / ${w.ties} / ${w.losses}</td><td>${r.mean.toPrecision(4)}</td><td>${report.results[s.name]![base.label]!.mean.toPrecision(4)}</td></tr>`);
    }
  }
  const checks = (o.checks ?? []).map((c) => `<h3>${esc(c.title)}</h3><p class="explain">${esc(c.explain)}</p><table>` +
    Object.entries(c.rows).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('') + '</table>').join('\n');
  const shown = Math.min(o.seedsShown ?? 4, report.prompts[0]?.images.length ?? 0);
  const grid = report.prompts.map((p) => {
    const cells = p.images.slice(0, shown).map((img) => `<td>${[base, ...trained].map((m) =>
      `<img src="${pngDataUri(join(evalDir, img.files[m.label]!))}" width="64" height="64" style="image-rendering:pixelated;margin:1px" alt="${esc(`${m.label}, ${p.prompt}, seed ${img.seed}`)}" title="${esc(`${m.label}, seed ${img.seed}`)}">`).join('')}</td>`).join('');
    return `<tr><th>${esc(p.prompt)}</th>${cells}</tr>`;
  }).join('\n');
  return `<section id="evaluation"><h2>Evaluation: ${esc(trained.map((m) => m.label).join(', '))} against ${esc(base.label)}</h2>
${o.intro ? `<p>${esc(o.intro)}</p>` : ''}
<p class="explain">The win rate is the share of (prompt, seed) pairs on which the trained model's image scores higher than the base's image for the same prompt and seed (ties count half); the interval is a ${Math.round(report.statistics.level * 100)}% bootstrap over prompts (${report.prompts.length} of them: with few prompts, or when every prompt wins, the interval is narrow by construction). 50% means no change; a preference the model has learned shows as a win rate well above 50% whose interval stays above it.</p>
<table><tr><th>scorer</th><th>model</th><th>win rate</th><th>${Math.round(report.statistics.level * 100)}% interval</th><th>wins / ties / losses</th><th>mean</th><th>${esc(base.label)} mean</th></tr>${rows.join('')}</table>
${checks}
<h3>Images: ${esc([base, ...trained].map((m) => m.label).join(' | '))}, per seed</h3>
<table class="grid"><tr><th>prompt</th>${Array.from({ length: shown }, (_, k) => `<th>seed ${report.prompts[0]!.images[k]!.seed}</th>`).join('')}</tr>
${grid}</table>
<p class="explain">Images are from eval/ (eval.html there has every image, sortable per-prompt scores and the settings).</p></section>`;
}

/** Puts the section into a written report.html (in place of an earlier one, if any). */
export function addEvaluationToReport(reportPath: string, section: string): void {
  const html = readFileSync(reportPath, 'utf8');
  const start = html.indexOf('<section id="evaluation">');
  const end = start >= 0 ? html.indexOf('</section>', start) : -1;
  if (start >= 0 && end < 0) throw new Error(`${reportPath}: its evaluation section has no end; write the report again (rerun training or the demo)`);
  // a function, not a string, as the replacement: prompts may hold $& and the like
  const replaced = start >= 0
    ? html.slice(0, start) + section + html.slice(end + '</section>'.length)
    : html.includes(EVALUATION_SLOT) ? html.replace(EVALUATION_SLOT, () => section) : null;
  if (replaced === null) throw new Error(`${reportPath}: no place for the evaluation (not a report.html this version wrote)`);
  writeFileAtomic(reportPath, replaced);
}
