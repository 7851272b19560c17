// `diffusion-dpo eval` as a user runs it, on a generated tiny pipeline (16 px, 2 steps, 2 prompts,
// 2 seeds) with a trained-UNet column and a LoRA column, scored by PickScore on the tiny CLIP
// fixture: the report's numbers agree with its own per-image scores, a second run reuses every
// image, a retrained LoRA renders its column alone again, other settings render everything again,
// eval.html works in headless Chromium, and wrong command lines fail before anything is rendered.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import * as torch from '../src/torch/index.js';
import { loadUNet } from '../src/models/index.js';
import { saveComponent } from '../src/models/loading.js';
import type { EvalReport } from '../src/eval/report.js';
import { mean, winRate } from '../src/eval/stats.js';
import { readPngText } from '../src/pipelines/png.js';
import { writeTinyPipeline } from './helpers/tiny_pipeline.js';
import { chromiumSkip, loadPage, nonWhitePixels, screenshot } from './helpers/chromium.js';
import { fixturesDir, projectRoot } from './helpers/fixtures.js';

const bin = join(projectRoot, 'bin', 'diffusion-dpo.js');
const dir = mkdtempSync(join(tmpdir(), 'dpo-eval-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const model = join(dir, 'model');
const trained = join(dir, 'trained-unet');
const lora = join(dir, 'lora.safetensors');
const out = join(dir, 'E');
const LORA_LAYER = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q';

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [bin, 'eval', ...args], { encoding: 'utf8', cwd: projectRoot, env: { ...process.env, ...env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const scorer = ['--scorers', 'pickscore', '--scorer_model', `pickscore=${join(fixturesDir, 'tiny-clip')}`, '--scorer_processor', `pickscore=${join(fixturesDir, 'tokenizer')}`];
const run = (extra: string[] = []) => cli(['--pretrained_model_name_or_path', model, '--unet', trained, '--lora', lora, '--label', 'dpo', '--label', 'lora1',
  '--prompt', 'a red cube', '--prompt', 'a "quoted" dog & cat', '--seeds', '2', '--seed', '3', '--num_inference_steps', '2', '--height', '16', '--width', '16',
  '--device', 'cpu', ...scorer, '--output_dir', out, ...extra]);

/** A peft-layout LoRA on one attention projection, random enough to change the images. */
function writeLora(seed: number): void {
  torch.manualSeed(seed);
  torch.tidy(() => torch.saveSafetensors(lora, new Map([
    [`unet.${LORA_LAYER}.lora_A.weight`, torch.randn([4, 32]).mul(0.5)],
    [`unet.${LORA_LAYER}.lora_B.weight`, torch.randn([32, 4]).mul(0.5)],
  ])));
}

interface Summary { images: { rendered: number; reused: number }; models: string[]; eval_json: string; page: string }

describe('eval', () => {
  before(() => {
    writeTinyPipeline(model, 3);
    // a "trained" UNet: the tiny one with its output layer moved
    const unet = loadUNet(join(model, 'unet'));
    torch.noGrad(() => torch.tidy(() => unet.conv_out.bias!.add_(0.5)));
    saveComponent(trained, unet, 'UNet2DConditionModel');
    unet.dispose();
    writeLora(1);
  });

  test('renders and scores base, a UNet and a LoRA on the same prompts and seeds; eval.json agrees with its per-image scores', async () => {
    const r = run();
    assert.equal(r.code, 0, r.err);
    const summary = JSON.parse(r.out) as Summary;
    assert.deepEqual(summary.images, { rendered: 12, reused: 0 });
    assert.deepEqual(summary.models, ['base', 'dpo', 'lora1']);
    assert.match(r.err, /protocol paper: .*; overridden: num_inference_steps 50 -> 2, seeds 1 -> 2/);
    assert.match(r.err, /\[lora1\] LoRA .* 1 layers of the unet merged at scale 1/);
    const report = JSON.parse(readFileSync(join(out, 'eval.json'), 'utf8')) as EvalReport;
    assert.equal(report.format, 'diffusion-dpo-eval');
    assert.deepEqual(report.models.map((m) => [m.label, m.kind, m.folder]), [['base', 'base', 'images/base'], ['dpo', 'unet', 'images/dpo'], ['lora1', 'lora', 'images/lora1']]);
    assert.equal(report.protocol.name, 'paper');
    assert.deepEqual(report.protocol.overridden, { num_inference_steps: { protocol: 50, used: 2 }, seeds: { protocol: 1, used: 2 } });
    assert.deepEqual(report.protocol.preset, { num_inference_steps: 50, guidance_scale: '7.5 (SD) or 5.0 (SDXL)', scheduler: 'the pipeline\'s default', seeds: 1 });
    const s = report.settings;
    assert.deepEqual([s.num_inference_steps, s.guidance_scale, s.scheduler, s.seeds, s.seed, s.height, s.width, s.prompt_count, s.lora_scale],
      [2, 7.5, 'PNDMScheduler', 2, 3, 16, 16, 2, 1]);
    assert.equal(s.prompts, '2 --prompt');
    assert.deepEqual([report.statistics.resamples, report.statistics.seed, report.statistics.level], [2000, 0, 0.95]);
    assert.equal(report.scorers.length, 1);
    assert.match(report.scorers[0]!.description, /^pickscore: .*tiny-clip/);
    assert.deepEqual(report.prompts.map((p) => p.prompt), ['a red cube', 'a "quoted" dog & cat']);

    // every number of the summary, again from the per-image scores
    const scoresOf = (label: string) => report.prompts.flatMap((p) => p.images.map((im) => im.scores.pickscore![label]!));
    for (const label of ['base', 'dpo', 'lora1']) {
      const res = report.results.pickscore![label]!;
      assert.ok(Math.abs(res.mean - mean(scoresOf(label))) < 1e-12);
      assert.equal(res.images, 4);
    }
    for (const label of ['dpo', 'lora1']) {
      const w = report.results.pickscore![label]!.win_rate!;
      const expected = winRate(scoresOf(label), scoresOf('base'));
      assert.deepEqual([w.rate, w.wins, w.ties, w.losses, w.pairs], [expected.rate, expected.wins, expected.ties, expected.losses, 4]);
      assert.ok(w.low <= w.rate && w.rate <= w.high && w.low >= 0 && w.high <= 1, JSON.stringify(w));
      // the headline names: win_rate, ci_low, ci_high per scorer and trained model
      assert.deepEqual(report.win_rates.pickscore![label], { win_rate: w.rate, ci_low: w.low, ci_high: w.high });
    }
    assert.deepEqual(Object.keys(report.win_rates.pickscore!), ['dpo', 'lora1']);

    // the images: 16 px, seeds 3 and 4, each model's own, their settings and weights in text chunks
    const first = report.prompts[0]!.images;
    assert.deepEqual(first.map((im) => im.seed), [3, 4]);
    assert.deepEqual(first[0]!.files, { base: 'images/base/000-3.png', dpo: 'images/dpo/000-3.png', lora1: 'images/lora1/000-3.png' });
    const pixels = await Promise.all(['base', 'dpo', 'lora1'].map((m) => sharp(join(out, first[0]!.files[m]!)).raw().toBuffer({ resolveWithObject: true })));
    assert.deepEqual([pixels[0]!.info.width, pixels[0]!.info.height], [16, 16]);
    assert.notDeepEqual(pixels[1]!.data, pixels[0]!.data);
    assert.notDeepEqual(pixels[2]!.data, pixels[0]!.data);
    const tags = readPngText(readFileSync(join(out, 'images', 'lora1', '001-4.png')));
    assert.equal(tags.prompt, 'a "quoted" dog & cat');
    assert.deepEqual([tags.seed, tags.num_inference_steps, tags.guidance_scale, tags.scheduler, tags.device, tags.lora, tags.lora_scale], ['4', '2', '7.5', 'PNDMScheduler', 'cpu', lora, '1']);
    assert.match(tags.weights!, /^[0-9a-f]{16}$/);

    const html = readFileSync(join(out, 'eval.html'), 'utf8');
    assert.equal((html.match(/<img /g) ?? []).length, 12);
    assert.match(html, /a &#34;quoted&#34; dog &#38; cat/);
    assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//);
  });

  test('a second run reuses every image and gives the same numbers', () => {
    const before = statSync(join(out, 'images', 'dpo', '000-3.png')).mtimeMs;
    const first = JSON.parse(readFileSync(join(out, 'eval.json'), 'utf8')) as EvalReport;
    const r = run();
    assert.equal(r.code, 0, r.err);
    assert.deepEqual((JSON.parse(r.out) as Summary).images, { rendered: 0, reused: 12 });
    assert.match(r.err, /\[dpo\] 4 of 4 images already in/);
    assert.equal(statSync(join(out, 'images', 'dpo', '000-3.png')).mtimeMs, before);
    const again = JSON.parse(readFileSync(join(out, 'eval.json'), 'utf8')) as EvalReport;
    assert.deepEqual(again.results, first.results);
    assert.deepEqual(again.prompts, first.prompts);
  });

  test('a retrained LoRA renders its images alone again; other settings render everything again', () => {
    writeLora(2);
    let r = run();
    assert.equal(r.code, 0, r.err);
    assert.deepEqual((JSON.parse(r.out) as Summary).images, { rendered: 4, reused: 8 });
    assert.match(r.err, /\[lora1\] 0 of 4 images already in .*; rendering again: 4 made differently \(weights was "[0-9a-f]{16}", now "[0-9a-f]{16}"\)/);
    r = run(['--guidance_scale', '3']);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual((JSON.parse(r.out) as Summary).images, { rendered: 12, reused: 0 });
    assert.match(r.err, /\[base\] 0 of 4 images .*guidance_scale was "7\.5", now "3"/);
    const report = JSON.parse(readFileSync(join(out, 'eval.json'), 'utf8')) as EvalReport;
    assert.equal(report.settings.guidance_scale, 3);
    assert.deepEqual(report.protocol.overridden.guidance_scale, { protocol: '7.5 (SD) or 5.0 (SDXL)', used: 3 });
    assert.equal(readPngText(readFileSync(join(out, 'images', 'base', '000-3.png'))).guidance_scale, '3');
  });

  test('eval.html in headless Chromium: loads, every image decodes, no console message, not blank', { skip: chromiumSkip() }, async () => {
    const page = join(out, 'eval.html');
    const { dom, console } = loadPage(page);
    assert.deepEqual(console, []);
    assert.match(dom, /data-images-loaded="12\/12"/);
    const shot = join(dir, 'eval.png');
    screenshot(page, shot, 1200, 1600);
    assert.ok(await nonWhitePixels(shot) > 20_000, 'the screenshot shows the report');
  });

  test('wrong command lines fail before anything is rendered', () => {
    const none = join(dir, 'never');
    const base = ['--pretrained_model_name_or_path', model, '--prompt', 'x', '--device', 'cpu', '--output_dir', none];
    const cases: [string[], RegExp][] = [
      [[], /--scorers is required/],
      [['--scorers', 'pickscore,imagereward'], /--scorers: unknown scorer 'imagereward' \(scorers: pickscore, hpsv2, hpsv2\.1, clip, aesthetics, demo_oracle\)/],
      [['--scorers', 'clip,clip'], /--scorers names clip twice/],
      [['--scorers', 'clip', '--scorer_model', 'pickscore=x'], /--scorer_model pickscore: not one of --scorers \(clip\)/],
      [['--scorers', 'clip', '--scorer_model', 'clip'], /--scorer_model 'clip': expected NAME=PATH/],
      [['--scorers', 'clip', '--scorer_model', 'clip=./no/such/model'], /--scorer_model clip=\.\/no\/such\/model: no such file or folder, and not a Hub id/],
      [['--scorers', 'clip', '--unet', trained, '--label', 'base'], /two models would be named 'base' \('base' is the base pipeline\)/],
      [['--scorers', 'clip', '--unet', trained, '--unet', trained], /two models would be named 'trained-unet'/],
      [['--scorers', 'clip', '--protocol', 'hps'], /--protocol must be one of paper, spo; got 'hps'/],
      [['--scorers', 'clip', '--num_images_per_prompt', '2'], /unknown flag '--num_images_per_prompt'/],
      [['--scorers', 'clip', '--scheduler', 'lms'], /--scheduler: unknown scheduler 'lms'/],
      [['--scorers', 'clip', '--lora_scale', '0.5'], /--lora_scale applies to --lora/],
      [['--scorers', 'clip', '--height', '10'], /--height 10: .* needs a positive multiple of 4/],
    ];
    for (const [args, message] of cases) {
      const r = cli([...base, ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err, message);
      assert.doesNotMatch(r.err, /\n\s+at /, 'no stack');
    }
    const hps = cli(['--pretrained_model_name_or_path', model, '--prompts', 'hpsv2', '--scorers', 'clip', '--output_dir', none], { HF_HUB_OFFLINE: '1', HF_HUB_CACHE: join(dir, 'empty-cache') });
    assert.equal(hps.code, 2, hps.err);
    assert.match(hps.err, /--prompts: dataset zhwang\/HPDv2 .* is not in the Hugging Face cache/);
    assert.ok(!existsSync(none));
  });
});
