// report.html: round-number ticks, TensorBoard's debiased smoothing, the chance line and the
// explanations, the settings; and the page in headless Chromium (it loads without a console
// message and draws something).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { niceTicks, renderReport, smooth } from '../src/train/report.js';
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
});
