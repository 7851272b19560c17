// The demo's domain, its classifier, its preference data and the committed base pipeline
// (scripts/demo-base, made by scripts/make-demo-base.js): the renderer draws what the caption says,
// the classifier reads it back, the parquet shards go through the real Pick-a-Pic reader with the
// warmer drawing preferred, and the base pipeline draws the prompted colour and shape well above
// chance.
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { Rng } from '../src/data/rng.js';
import { openSource } from '../src/data/dataset.js';
import { CHANCE, classifyDrawing, recognitionRate } from '../src/demo/classifier.js';
import { drawWithPipeline } from '../src/demo/draw.js';
import { DEMO_RENDERER, writeDemoPreferenceSet } from '../src/demo/preference_data.js';
import { allCaptions, COLOUR_NAMES, heldOutCaptions, randomSpec, renderShape, SHAPE_NAMES } from '../src/demo/shapes.js';
import { wordLevelVocabulary } from '../src/demo/word_tokenizer.js';
import { warmth } from '../src/scoring/demo_oracle.js';
import { loadScorer } from '../src/scoring/load.js';
import { CLIPTokenizer } from '../src/tokenizers/clip.js';
import { projectRoot } from './helpers/fixtures.js';

const BASE = join(projectRoot, 'scripts', 'demo-base');

test('the classifier reads colour and shape of rendered drawings exactly, and finds nothing in a blank image', () => {
  const rng = new Rng(7);
  const items = Array.from({ length: 600 }, () => {
    const colour = COLOUR_NAMES[rng.int(COLOUR_NAMES.length)]!;
    const shape = SHAPE_NAMES[rng.int(SHAPE_NAMES.length)]!;
    return { image: renderShape(randomSpec(rng, colour, shape)), colour, shape };
  });
  assert.deepEqual(recognitionRate(items), { images: 600, colour: 1, shape: 1, both: 1 });
  const blank = renderShape({ ...randomSpec(rng, 'red', 'circle'), r: 0 });
  assert.deepEqual(classifyDrawing(blank), { colour: null, shape: null, fill: 0, shapePixels: 0 });
});

test('the background runs from cool to warm and the warmth score follows it', () => {
  const spec = randomSpec(new Rng(1), 'green', 'square');
  const scores = [0, 0.25, 0.5, 0.75, 1].map((w) => warmth(renderShape({ ...spec, warmth: w })));
  for (let i = 1; i < scores.length; i++) assert.ok(scores[i]! > scores[i - 1]!, `warmth ${scores.join(', ')}`);
  assert.ok(scores[0]! < -0.2 && scores[4]! > 0.2, `ends ${scores[0]} ${scores[4]}`);
});

test('the word-level tokenizer makes every domain word one token and still spells anything else', () => {
  const words = [...new Set(allCaptions().flatMap((c) => c.caption.split(' ')))];
  const { vocab, merges } = wordLevelVocabulary(words);
  const tok = new CLIPTokenizer(vocab, merges);
  for (const w of words) assert.deepEqual(tok.tokenize(w), [`${w}</w>`], w);
  assert.deepEqual(tok.encode('a blue triangle', { padding: false }).inputIds, [vocab['<|startoftext|>'], vocab['a</w>'], vocab['blue</w>'], vocab['triangle</w>'], vocab['<|endoftext|>']]);
  assert.ok(tok.tokenize('orange').length > 1, 'a word outside the vocabulary is spelled in pieces');
  // CLIP pools at argmax(ids): the end-of-text token must have the highest id
  assert.equal(Math.max(...Object.values(vocab)), vocab['<|endoftext|>']);
});

test('the demo preference set: Pick-a-Pic parquet shards, read by the real reader, the warmer drawing preferred, held-out captions absent', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dpo-demo-data-'));
  try {
    const summary = await writeDemoPreferenceSet(dir, { pairs: 40, shards: 2, seed: 3 });
    assert.equal(summary.shards.length, 2);
    const source = await openSource(dir);
    assert.equal(source.size, 40);
    const rows = await source.read(Array.from({ length: 40 }, (_, i) => i));
    const meta = await source.scanMeta();
    assert.ok(meta.every((m) => m.model0 === DEMO_RENDERER && m.model1 === DEMO_RENDERER));
    const held = new Set(heldOutCaptions());
    let first = 0;
    for (const r of rows) {
      assert.ok(typeof r.caption === 'string' && !held.has(r.caption), String(r.caption));
      const decode = async (b: typeof r.image0) => {
        const { data, info } = await sharp(Buffer.from(b as Uint8Array)).raw().toBuffer({ resolveWithObject: true });
        return warmth({ width: info.width, height: info.height, channels: info.channels, data });
      };
      const [w0, w1] = [await decode(r.image0), await decode(r.image1)];
      // labels come from the rendered pixels; the JPEGs (quality 95, 4:4:4) keep the order
      assert.equal(r.label0, w0 > w1 ? 1 : 0, `${r.caption}: warmth ${w0} vs ${w1}, label_0 ${r.label0}`);
      assert.equal(r.label1, 1 - r.label0!);
      first += r.label0!;
    }
    assert.ok(first > 8 && first < 32, `the preferred drawing comes first in ${first} of 40 rows`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the committed base pipeline draws the prompted colour and shape well above chance', () => {
  const readme = readFileSync(join(BASE, 'README.md'), 'utf8');
  assert.match(readme, /Generated by `node scripts\/make-demo-base\.js/);
  const jobs = allCaptions().flatMap((c) => [100, 101].map((seed) => ({ ...c, prompt: c.caption, seed })));
  const images = drawWithPipeline(join(BASE, 'pipeline'), jobs, { steps: 25, guidance: 5 });
  const rate = recognitionRate(images.map((image, i) => ({ image, colour: jobs[i]!.colour, shape: jobs[i]!.shape })));
  // stated margins over chance (1/6 colour, 1/3 shape): see the base's README for the measured rates
  assert.ok(rate.colour >= CHANCE.colour + 0.6, `colour recognised in ${rate.colour} (chance ${CHANCE.colour})`);
  assert.ok(rate.shape >= CHANCE.shape + 0.4, `shape recognised in ${rate.shape} (chance ${CHANCE.shape})`);
});

test('the domain CLIP (a transformers CLIPModel folder) scores as `clip`: the plain cosine, highest for the true caption', async () => {
  const scorer = await loadScorer('clip', { model: join(BASE, 'clip') });
  try {
    assert.match(scorer.description, /transformers CLIPModel; cosine/);
    const rng = new Rng(11);
    const captions = allCaptions();
    let right = 0;
    for (const c of captions) {
      const image = renderShape(randomSpec(rng, c.colour, c.shape));
      const scores = await scorer.score(captions.map((o) => ({ image, prompt: o.caption })));
      for (const s of scores) assert.ok(s >= -1 && s <= 1, `a cosine: ${s}`);
      right += +(scores.indexOf(Math.max(...scores)) === captions.indexOf(c));
    }
    // contrastive training on the domain: the true caption is the best of 18 for (nearly) every drawing
    assert.ok(right >= captions.length - 2, `true caption ranked first for ${right} of ${captions.length} drawings`);
  } finally {
    scorer.dispose();
  }
});

test('a transformers CLIPModel folder for clip without its own processor files is refused by name, not given another model\'s', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dpo-demo-clip-'));
  try {
    for (const f of ['config.json', 'model.safetensors', 'vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json']) copyFileSync(join(BASE, 'clip', f), join(dir, f));
    await assert.rejects(loadScorer('clip', { model: dir }), /needs preprocessor_config\.json beside config\.json/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
