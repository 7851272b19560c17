// `diffusion-dpo score`: prompts from the PNG text chunks sample writes, from --prompt or a
// --prompts file; CSV and JSONL rows equal to the scorer's own numbers; --softmax per prompt; and
// what is refused before any model loads.
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse as parseCsv } from 'csv-parse/sync';
import { decodeForScoring } from '../src/data/decode.js';
import { loadScorer } from '../src/scoring/load.js';
import { softmaxByPrompt } from '../src/cli/score.js';
import { writeTinyPipeline } from './helpers/tiny_pipeline.js';
import { fixturesDir } from './helpers/fixtures.js';
import { runCli } from './helpers/train_cli.js';

const dir = mkdtempSync(join(tmpdir(), 'dpo-score-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const tinyClip = ['--model', join(fixturesDir, 'tiny-clip'), '--processor', join(fixturesDir, 'tokenizer')];
const samples = join(dir, 'samples');

describe('diffusion-dpo score', () => {
  before(async () => {
    writeTinyPipeline(join(dir, 'model'), 3);
    const r = await runCli(['sample', '--pretrained_model_name_or_path', join(dir, 'model'), '--prompt', 'a red square', '--prompt', 'a blue circle, at night',
      '--num_inference_steps', '2', '--height', '16', '--width', '16', '--num_images_per_prompt', '2', '--output_dir', samples]);
    assert.equal(r.code, 0, r.err);
  });

  test('prompts from the PNGs, a CSV row per image with the scorer\'s own scores; JSONL with --softmax per prompt', async () => {
    const out = join(dir, 'scores.csv');
    const r = await runCli(['score', '--scorer', 'pickscore', ...tinyClip, '--batch_size', '3', '--output', out, samples]);
    assert.equal(r.code, 0, r.err);
    const rows = parseCsv(readFileSync(out, 'utf8'), { columns: true }) as { image: string; prompt: string; score: string }[];
    assert.equal(rows.length, 4, 'the four samples; grid.png carries no prompt and is left out');
    assert.match(r.err, /left out 1 image\(s\) of the folders that carry no prompt: grid\.png/);
    assert.deepEqual(rows.map((x) => x.prompt), ['a red square', 'a red square', 'a blue circle, at night', 'a blue circle, at night']);
    const scorer = await loadScorer('pickscore', { model: join(fixturesDir, 'tiny-clip'), processor: join(fixturesDir, 'tokenizer') });
    const direct = await scorer.score(await Promise.all(rows.map(async (x) => ({ image: await decodeForScoring(readFileSync(x.image)), prompt: x.prompt }))));
    scorer.dispose();
    rows.forEach((x, i) => assert.ok(Math.abs(Number(x.score) - direct[i]!) < 1e-5, `${x.image}: ${x.score} vs ${direct[i]}`));

    const jsonl = join(dir, 'scores.jsonl');
    const s = await runCli(['score', '--scorer', 'pickscore', ...tinyClip, '--softmax', '--output', jsonl, samples]);
    assert.equal(s.code, 0, s.err);
    const lines = readFileSync(jsonl, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { prompt: string; probability: number });
    for (const p of ['a red square', 'a blue circle, at night']) {
      const sum = lines.filter((l) => l.prompt === p).reduce((a, l) => a + l.probability, 0);
      assert.ok(Math.abs(sum - 1) < 1e-6, `${p}: ${sum}`);
    }
  });

  test('--prompt for all, --prompts as .txt or .jsonl; images without prompts, a wrong count, unknown scorers and --softmax elsewhere are refused', async () => {
    const jpg = join(dir, 'photo.jpg');
    copyFileSync(join(fixturesDir, 'images', 'img0_landscape.jpg'), jpg);
    let r = await runCli(['score', '--scorer', 'pickscore', ...tinyClip, jpg]);
    assert.equal(r.code, 2);
    assert.match(r.err, /no prompt for .*photo\.jpg: these images carry none/);
    r = await runCli(['score', '--scorer', 'pickscore', ...tinyClip, '--prompt', 'a landscape', jpg]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^image,prompt,score\n.*photo\.jpg,a landscape,-?\d/);
    writeFileSync(join(dir, 'p.txt'), 'one\ntwo\n');
    r = await runCli(['score', '--scorer', 'pickscore', ...tinyClip, '--prompts', join(dir, 'p.txt'), jpg]);
    assert.equal(r.code, 2);
    assert.match(r.err, /2 lines for 1 images/);
    writeFileSync(join(dir, 'p.jsonl'), JSON.stringify({ image: 'photo.jpg', prompt: 'by name' }) + '\n');
    r = await runCli(['score', '--scorer', 'pickscore', ...tinyClip, '--prompts', join(dir, 'p.jsonl'), jpg]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /photo\.jpg,by name,/);
    r = await runCli(['score', '--scorer', 'pick', jpg]);
    assert.equal(r.code, 2);
    assert.match(r.err, /unknown scorer 'pick'/);
    r = await runCli(['score', '--scorer', 'hpsv2', '--softmax', jpg]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--softmax applies to pickscore/);
  });

  test('softmax within each prompt\'s images', () => {
    const p = softmaxByPrompt(['a', 'b', 'a'], [1, 5, 1 + Math.log(3)]);
    assert.ok(Math.abs(p[0]! - 0.25) < 1e-12 && Math.abs(p[2]! - 0.75) < 1e-12 && p[1] === 1);
  });
});
