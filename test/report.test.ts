// report.html: round-number ticks, TensorBoard's debiased smoothing, the chance line and the
// explanations, the settings; and the page in headless Chromium (it loads without a console
// message and draws something).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import sharp from 'sharp';
import { buildEvalReport } from '../src/eval/report.js';
import { resolveProtocol } from '../src/eval/protocol.js';
import { niceTicks, renderReport, smooth } from '../src/train/report.js';
import { addEvaluationToReport, evaluationSection } from '../src/train/report_eval.js';
import { chromiumSkip, loadPage, nonWhitePixels, screenshot } from './helpers/chromium.js';

const dir = mkdtempSync(join(tmpdir(), 'dpo-report-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A plausible run: the loss drifting below log 2, accuracy climbing above chance, with noise. */
function history(n: number): Record<string, number>[] {
  return Array.from({ length: n }, (_, i) => ({
    step: i + 1, train_loss: 0.693 - 0.002 * i + 0.03 * Math.sin(i * 1.7), implicit_acc_accumulated: 0.5 + 0.006 * i + 0.08 * Math.cos(i * 2.3),
    reward_margin_mean: 0.01 * i, model_mse_unaccumulated: 0.12 + 0.001 * Math.sin(i), grad_norm: 10 ** (1 + Math.sin(i)), lr: i < 5 ? 1e-5 * (i + 1) / 5 : 1e-5,
    pairs_per_s: 20 + Math.sin(i), ...(i % 2 ? { implicit_acc_t0_249: 0.6 } : { implicit_acc_t750_999: 0.5 }), ...(i === 17 ? { loss_spike: 1 } : {}),
  }));
}

/** An eval of base vs dpo on 2 prompts x 3 seeds with real (tiny) PNGs under `evalDir`: dpo wins 5 of 6. */
async function evalRun(evalDir: string) {
  const models = [{ label: 'base', kind: 'base', source: 'base', folder: 'images/base' }, { label: 'dpo', kind: 'unet', source: 'run', folder: 'images/dpo' }] as const;
  const prompts = ['a red circle $& $1', 'a <b>blue</b> square'];
  const seeds = [0, 1, 2];
  const files = models.map((m) => prompts.map((_, pi) => seeds.map((s) => `${m.folder}/${pi}-${s}.png`)));
  for (const [mi, m] of models.entries()) {
    mkdirSync(join(evalDir, m.folder), { recursive: true });
    for (const row of files[mi]!) for (const f of row) writeFileSync(join(evalDir, f), await sharp({ create: { width: 32, height: 32, channels: 3, background: mi ? '#c07040' : '#5070b0' } }).png().toBuffer());
  }
  return buildEvalReport({
    created: '2026-01-01T00:00:00.000Z', command: ['diffusion-dpo', 'eval'], prompts, seeds, models: [...models], files,
    scorers: [{ name: 'demo_oracle', description: 'warmth' }],
    scores: { demo_oracle: [[[0, 0, 0], [0, 0, 0]], [[1, 1, 1], [1, 1, -1]]] },
    bootstrap: { resamples: 500, seed: 0, level: 0.95 }, settings: { seeds: 3 },
    protocol: { ...resolveProtocol('paper', { num_inference_steps: 25, guidance_scale: 5, scheduler: null, seeds: 3 }) }, images: 'linked',
  });
}

describe('report.html', () => {
  test('ticks at round numbers; debiased exponential smoothing', () => {
    assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
    assert.deepEqual(niceTicks(0.48, 0.72), [0.5, 0.55, 0.6, 0.65, 0.7]);
    assert.deepEqual(niceTicks(1, 30), [10, 20, 30]);
    assert.deepEqual(smooth([1, 1, 1], 0.9).map((v) => Number(v.toFixed(12))), [1, 1, 1]);
    const s = smooth([0, 1], 0.5);
    assert.equal(s[0], 0);
    assert.ok(Math.abs(s[1]! - 2 / 3) < 1e-12);
  });

  test('curves with the chance line and what each means, the settings, spikes and rows by timestep', () => {
    const html = renderReport({ history: history(40), settings: { base_model: 'tiny', beta_dpo: 5000 }, badRows: { missing_image: 2 } });
    assert.match(html, /chance 0\.5/);
    assert.match(html, /0\.5 is chance; a run that learns the preference climbs above the line/);
    assert.match(html, /starts at log 2 ≈ 0\.693/);
    assert.match(html, /<h2>Settings<\/h2><table><tr><th>base_model<\/th><td>tiny<\/td><\/tr><tr><th>beta_dpo<\/th><td>5000<\/td>/);
    assert.match(html, /at steps 18/);
    assert.match(html, /implicit_acc_t0_249<\/th><td>0\.60000/);
    assert.match(html, /missing_image<\/th><td>2/);
    assert.match(html, /\(log scale\)/, 'the gradient norm spans decades');
    assert.equal((html.match(/<figure>/g) ?? []).length, 7);
  });

  test('in headless Chromium: loads with no console message, and draws', { skip: chromiumSkip() }, async () => {
    const page = join(dir, 'report.html');
    writeFileSync(page, renderReport({ history: history(60), settings: { objective: 'sigmoid' } }));
    const loaded = loadPage(page);
    assert.deepEqual(loaded.console, []);
    assert.match(loaded.dom, /Training report/);
    const png = join(dir, 'report.png');
    screenshot(page, png);
    assert.ok(await nonWhitePixels(png) > 20_000, 'the curves and text are drawn');
  });

  test('the evaluation section: win rates with intervals, the checks, a base-vs-trained grid inlined; replaced, not repeated, on a second run', async () => {
    const evalDir = join(dir, 'eval-section');
    const report = await evalRun(evalDir);
    const page = join(dir, 'with-eval.html');
    writeFileSync(page, renderReport({ history: history(30) }));
    const section = evaluationSection(report, evalDir, { seedsShown: 2, intro: 'held-out prompts', checks: [{ title: 'Fidelity', explain: 'classifier', rows: { base: '90%', dpo: '88%' } }] });
    addEvaluationToReport(page, section);
    const html = readFileSync(page, 'utf8');
    assert.match(html, /<td>demo_oracle<\/td><td>dpo<\/td><td><b>83\.3%<\/b><\/td>/);
    assert.match(html, /<td>5 \/ 0 \/ 1<\/td>/);
    assert.match(html, /<th>dpo<\/th><td>88%<\/td>/);
    assert.match(html, /a &#60;b&#62;blue&#60;\/b&#62; square/, 'prompts are escaped');
    assert.ok(html.includes('a red circle $&amp; $1') || html.includes('a red circle $&#38; $1'), 'replacement patterns in prompts are kept as written');
    assert.match(html, /95% bootstrap over prompts \(2 of them/);
    assert.equal((html.match(/src="data:image\/png;base64,/g) ?? []).length, 2 * 2 * 2, '2 prompts x 2 seeds shown x 2 models');
    addEvaluationToReport(page, section);
    assert.equal((readFileSync(page, 'utf8').match(/<section id="evaluation">/g) ?? []).length, 1);
    assert.throws(() => { writeFileSync(join(dir, 'other.html'), '<html></html>'); addEvaluationToReport(join(dir, 'other.html'), section); }, /no place for the evaluation/);
  });

  test('in headless Chromium, the report with its evaluation: no console message, every inlined image decodes', { skip: chromiumSkip() }, async () => {
    const evalDir = join(dir, 'eval-chromium');
    const report = await evalRun(evalDir);
    const page = join(dir, 'report-eval.html');
    writeFileSync(page, renderReport({ history: history(30) }));
    addEvaluationToReport(page, evaluationSection(report, evalDir));
    // a copy with a probe that names broken images in the title (the report itself has no scripts)
    const probe = join(dir, 'report-eval-probe.html');
    writeFileSync(probe, readFileSync(page, 'utf8').replace('</body>', '<script>addEventListener("load", () => { const imgs = [...document.images]; document.title = `images ${imgs.length} decoded ${imgs.filter((i) => i.naturalWidth === 32).length}`; });</script></body>'));
    const loaded = loadPage(probe);
    assert.deepEqual(loaded.console, []);
    assert.match(loaded.dom, /<title>images 12 decoded 12<\/title>/);
    assert.deepEqual(loadPage(page).console, []);
  });
});
