// eval's report on plain numbers (every summary value worked out by hand), the protocols, the
// reuse rules for images already rendered, the hpsv2 prompt set from the Hub cache, and eval.html
// in headless Chromium: it loads, every image decodes, nothing reaches the console, and a
// screenshot shows the page.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import sharp from 'sharp';
import { evalHtml } from '../src/eval/html.js';
import { PROTOCOLS, resolveProtocol } from '../src/eval/protocol.js';
import { buildEvalReport, type EvalInput } from '../src/eval/report.js';
import { pngSize, reuseMismatch, weightsFingerprint } from '../src/eval/reuse.js';
import { addPngText } from '../src/pipelines/png.js';
import { loadPromptSet } from '../src/pipelines/prompts.js';
import { chromiumSkip, loadPage, nonWhitePixels, screenshot } from './helpers/chromium.js';

const dir = mkdtempSync(join(tmpdir(), 'dpo-eval-report-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** 2 models x 2 prompts x 2 seeds, two scorers. */
function input(): EvalInput {
  const models = [
    { label: 'base', kind: 'base', source: 'runwayml/stable-diffusion-v1-5', folder: 'images/base' },
    { label: 'dpo <run>', kind: 'unet', source: 'out/checkpoint-100', folder: 'images/dpo_run_' },
  ] as const;
  const prompts = ['a "quoted" cat & dog', 'a red cube'];
  const seeds = [0, 1];
  return {
    created: '2024-01-01T00:00:00.000Z',
    command: ['diffusion-dpo', 'eval'],
    prompts, seeds, models: [...models],
    files: models.map((m) => prompts.map((_, pi) => seeds.map((s) => `${m.folder}/00${pi}-${s}.png`))),
    scorers: [{ name: 'pickscore', description: 'pickscore: tiny' }, { name: 'aesthetics', description: 'aesthetics: tiny' }],
    scores: {
      // [model][prompt][seed]; trained vs base: prompt 0 win, tie; prompt 1 loss, win
      pickscore: [[[20, 21], [22, 19]], [[20.5, 21], [21, 19.5]]],
      // trained wins everywhere
      aesthetics: [[[5, 5], [5, 5]], [[6, 6], [6, 6]]],
    },
    bootstrap: { resamples: 2000, seed: 0, level: 0.95 },
    settings: { num_inference_steps: 50, guidance_scale: 7.5, scheduler: 'PNDMScheduler', seeds: 2 },
    protocol: { ...resolveProtocol('paper', { num_inference_steps: null, guidance_scale: null, scheduler: null, seeds: 2 }) },
    images: 'linked by relative paths',
  };
}

describe('eval report', () => {
  test('protocols: presets, and flags that override them are recorded', () => {
    const paper = resolveProtocol('paper', { num_inference_steps: null, guidance_scale: null, scheduler: null, seeds: null });
    assert.deepEqual([paper.steps, paper.guidanceScale, paper.scheduler, paper.seeds], [50, null, null, 1]);
    assert.deepEqual(paper.overridden, {});
    const spo = resolveProtocol('spo', { num_inference_steps: 30, guidance_scale: 5, scheduler: null, seeds: 4 });
    assert.deepEqual([spo.steps, spo.guidanceScale, spo.scheduler, spo.seeds], [30, 5, 'ddim', 4]);
    // guidance 5 is the protocol's own value: not an override
    assert.deepEqual(spo.overridden, { num_inference_steps: { protocol: 20, used: 30 }, seeds: { protocol: 1, used: 4 } });
    assert.deepEqual(spo.preset, { num_inference_steps: 20, guidance_scale: 5, scheduler: 'ddim', seeds: 1 });
    assert.equal(PROTOCOLS.paper.guidanceScale, null);
  });

  test('means, medians, win rates and per-prompt rows from the scores', () => {
    const r = buildEvalReport(input());
    assert.deepEqual(r.results.pickscore!.base, { mean: 20.5, median: 20.5, images: 4 });
    const dpo = r.results.pickscore!['dpo <run>']!;
    assert.deepEqual([dpo.mean, dpo.median, dpo.images], [20.5, 20.75, 4]);
    // pairs: 20.5>20 win, 21=21 tie, 21<22 loss, 19.5>19 win -> (2 + 0.5) / 4
    assert.deepEqual({ ...dpo.win_rate!, low: 0, high: 0 }, { vs: 'base', rate: 0.625, low: 0, high: 0, wins: 2, ties: 1, losses: 1, pairs: 4 });
    // prompts resampled: prompt 0 holds win+tie (0.75), prompt 1 loss+win (0.5): rates 0.5, 0.625 or 0.75
    assert.deepEqual([dpo.win_rate!.low, dpo.win_rate!.high], [0.5, 0.75]);
    const aes = r.results.aesthetics!['dpo <run>']!.win_rate!;
    assert.deepEqual([aes.rate, aes.low, aes.high, aes.wins], [1, 1, 1, 4]);
    assert.equal(r.results.aesthetics!.base!.win_rate, undefined);
    assert.equal(r.prompts.length, 2);
    assert.deepEqual(r.prompts[0]!.mean.pickscore, { base: 20.5, 'dpo <run>': 20.75 });
    assert.deepEqual(r.prompts[0]!.win_rate.pickscore, { 'dpo <run>': 0.75 });
    assert.deepEqual(r.prompts[1]!.win_rate.pickscore, { 'dpo <run>': 0.5 });
    assert.deepEqual(r.prompts[1]!.images[1], {
      seed: 1, files: { base: 'images/base/001-1.png', 'dpo <run>': 'images/dpo_run_/001-1.png' },
      scores: { pickscore: { base: 19, 'dpo <run>': 19.5 }, aesthetics: { base: 5, 'dpo <run>': 6 } },
    });
    assert.match(r.statistics.interval, /95% percentile bootstrap over prompts .*2000 resamples, seed 0/);
    assert.deepEqual(r.protocol.overridden, { seeds: { protocol: 1, used: 2 } });
    // the report is plain JSON
    assert.deepEqual(JSON.parse(JSON.stringify(r)), r);
  });

  test('inconsistent inputs are refused', () => {
    const bad = input();
    bad.scores = { ...bad.scores, pickscore: [[[1, 2]], [[1, 2]]] };
    assert.throws(() => buildEvalReport(bad), /scores of pickscore: expected 2 models x 2 prompts x 2 seeds/);
    const dup = input();
    dup.models = [dup.models[0]!, { ...dup.models[1]!, label: 'base' }];
    assert.throws(() => buildEvalReport(dup), /labels must be unique/);
  });

  test('eval.html: summary, plot, sortable table and gallery, escaped, with no external resource', () => {
    const html = evalHtml(buildEvalReport(input()));
    assert.match(html, /<svg class="plot"/);
    assert.equal((html.match(/<circle /g) ?? []).length, 2); // one win rate per scorer for the one trained model
    assert.match(html, /<table class="sortable" id="prompts">/);
    assert.match(html, /a &#34;quoted&#34; cat &#38; dog/);
    assert.match(html, /dpo &#60;run&#62;/);
    assert.equal((html.match(/<img /g) ?? []).length, 8);
    assert.match(html, /<img src="images\/base\/000-0\.png"/);
    assert.match(html, /62\.5%/);
    assert.match(html, /50\.0% – 75\.0%/);
    assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//); // nothing from the network
    assert.doesNotMatch(html, /<link |@import/);
  });

  test('reuse: the same weights and settings are reused; anything else is named', async () => {
    const model = join(dir, 'model');
    mkdirSync(join(model, 'unet'), { recursive: true });
    writeFileSync(join(model, 'model_index.json'), '{"_class_name": "StableDiffusionPipeline"}');
    writeFileSync(join(model, 'unet', 'config.json'), '{"sample_size": 16}');
    writeFileSync(join(model, 'unet', 'diffusion_pytorch_model.safetensors'), Buffer.alloc(64));
    const fp = weightsFingerprint([{ pipeline: model }]);
    assert.match(fp, /^[0-9a-f]{16}$/);
    assert.equal(weightsFingerprint([{ pipeline: model }]), fp);
    utimesSync(join(model, 'unet', 'diffusion_pytorch_model.safetensors'), new Date(2020, 1, 1), new Date(2020, 1, 1)); // rewritten weights
    const fp2 = weightsFingerprint([{ pipeline: model }]);
    assert.notEqual(fp2, fp);
    writeFileSync(join(model, 'unet', 'config.json'), '{"sample_size": 32}');
    assert.notEqual(weightsFingerprint([{ pipeline: model }]), fp2);
    const lora = join(dir, 'l.safetensors');
    writeFileSync(lora, 'x');
    assert.notEqual(weightsFingerprint([{ pipeline: model }, { file: lora }]), weightsFingerprint([{ pipeline: model }]));

    const png = await sharp({ create: { width: 8, height: 4, channels: 3, background: '#808080' } }).png().toBuffer();
    assert.deepEqual(pngSize(png), { width: 8, height: 4 });
    const file = join(dir, '000-0.png');
    const tags = { prompt: 'a cat', seed: '0', weights: fp, guidance_scale: '7.5' };
    writeFileSync(file, addPngText(png, { ...tags, software: 'diffusion-dpo' }));
    assert.equal(reuseMismatch(file, tags, { width: 8, height: 4 }), null);
    assert.equal(reuseMismatch(file, { ...tags, guidance_scale: '5' }, { width: 8, height: 4 }), 'guidance_scale was "7.5", now "5"');
    assert.equal(reuseMismatch(file, { ...tags, scheduler: 'ddim' }, { width: 8, height: 4 }), 'no scheduler recorded');
    assert.equal(reuseMismatch(file, tags, { width: 16, height: 16 }), 'size was 8x4, now 16x16');
    assert.equal(reuseMismatch(join(dir, 'none.png'), tags, { width: 8, height: 4 }), 'missing');
    writeFileSync(join(dir, 'junk.png'), 'not an image');
    assert.equal(reuseMismatch(join(dir, 'junk.png'), tags, { width: 8, height: 4 }), 'not a PNG');
  });

  test('--prompts hpsv2: the four style files of HPSv2\'s benchmark, in order, from the Hub cache', async () => {
    const cache = join(dir, 'hf');
    const commit = 'b'.repeat(40);
    const repo = join(cache, 'datasets--zhwang--HPDv2');
    const bench = join(repo, 'snapshots', commit, 'benchmark');
    mkdirSync(bench, { recursive: true });
    mkdirSync(join(repo, 'refs'), { recursive: true });
    writeFileSync(join(repo, 'refs', 'main'), commit);
    for (const style of ['anime', 'concept-art', 'paintings']) writeFileSync(join(bench, `${style}.json`), JSON.stringify([`${style} 1`, `${style} 2`]));
    writeFileSync(join(bench, 'drawbench.json'), '["not part of the benchmark"]');
    const offline = process.env.HF_HUB_OFFLINE;
    process.env.HF_HUB_OFFLINE = '1';
    try {
      // photo.json missing and offline: a clear error, no partial set
      await assert.rejects(loadPromptSet('hpsv2', { cacheDir: cache }), /dataset zhwang\/HPDv2 \(benchmark\/anime\.json, .*benchmark\/photo\.json\) is not in the Hugging Face cache .* HF_HUB_OFFLINE is set/);
      writeFileSync(join(bench, 'photo.json'), '["photo 1"]');
      assert.deepEqual(await loadPromptSet('hpsv2', { cacheDir: cache }), ['anime 1', 'anime 2', 'concept-art 1', 'concept-art 2', 'paintings 1', 'paintings 2', 'photo 1']);
    } finally {
      if (offline === undefined) delete process.env.HF_HUB_OFFLINE;
      else process.env.HF_HUB_OFFLINE = offline;
    }
  });

  test('eval.html in headless Chromium: loads, every image decodes, no console message, not blank', { skip: chromiumSkip() }, async () => {
    const out = join(dir, 'page');
    const r = input();
    for (const [mi, m] of r.models.entries()) {
      mkdirSync(join(out, m.folder), { recursive: true });
      for (const row of r.files[mi]!) {
        for (const f of row) {
          await sharp({ create: { width: 64, height: 64, channels: 3, background: mi ? '#c04020' : '#2040c0' } }).png().toFile(join(out, f));
        }
      }
    }
    const page = join(out, 'eval.html');
    writeFileSync(page, evalHtml(buildEvalReport(r)));
    const { dom, console } = loadPage(page);
    assert.deepEqual(console, []);
    assert.match(dom, /data-images-loaded="8\/8"/);
    const shot = join(out, 'shot.png');
    screenshot(page, shot, 1200, 900);
    const meta = await sharp(shot).metadata();
    assert.deepEqual([meta.width, meta.height], [1200, 900]);
    assert.ok(await nonWhitePixels(shot) > 20_000, 'the screenshot shows text, tables and the plot');
    // the per-prompt table sorts on a header click: a copy of the page clicks and records the row order
    const clicks = `<script>
const th = [...document.querySelectorAll('#prompts th')];
const order = () => [...document.querySelectorAll('#prompts tbody tr')].map((tr) => tr.cells[0].textContent).join(',');
const seen = [];
th[4].click(); seen.push(order()); th[4].click(); seen.push(order()); th[1].click(); seen.push(order());
document.body.dataset.sorted = seen.join(' ');
</script></body>`;
    const sortPage = join(out, 'sorted.html');
    writeFileSync(sortPage, readFileSync(page, 'utf8').replace('</body>', clicks));
    const sorted = loadPage(sortPage);
    assert.deepEqual(sorted.console, []);
    // column 4 is pickscore's win rate of "dpo <run>": prompt 1 (50%) before prompt 0 (75%), then reversed; then by prompt text
    assert.match(sorted.dom, /data-sorted="1,0 0,1 0,1"/);
    // a broken image is caught: it reaches the console
    rmSync(join(out, 'images', 'base', '000-0.png'));
    assert.ok(loadPage(page).console.some((m) => /image failed to load: images\/base\/000-0\.png/.test(m)));
  });
});
