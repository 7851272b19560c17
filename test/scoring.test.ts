// The reward models: open_clip's CLIP (HPSv2 / CLIP score) against open_clip itself on a tiny
// seeded model (test/fixtures/open_clip, made by open_clip 3.3: the eval transform's pixels, the
// tokens, both towers' normalised features, the scores), the scorers end to end through
// loadScorer (PickScore on the shared fixtures' tiny CLIP against transformers' numbers, HPS from
// a {'state_dict'} checkpoint, aesthetics on a 768-wide tiny CLIP), and refusals by name.
// (The transformers CLIPModel and the aesthetics head are also checked by the parity cases.)
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { decodeForScoring } from '../src/data/decode.js';
import type { RawImage } from '../src/data/pil_resize.js';
import { CLIPModel, loadCLIPModel, loadOpenClipModel } from '../src/models/index.js';
import { CLIPTokenizer } from '../src/tokenizers/clip.js';
import { AestheticsHead } from '../src/scoring/aesthetics_head.js';
import { loadScorer } from '../src/scoring/load.js';
import { openClipPreprocess, preprocessBatch } from '../src/scoring/preprocess.js';
import { htmlUnescape, tokenizeOpenClip } from '../src/scoring/scorers.js';
import { fixturesDir, testFixtures } from './helpers/fixtures.js';

const here = join(testFixtures, 'open_clip');
const caseJson = JSON.parse(readFileSync(join(here, 'tiny_open_clip_case.json'), 'utf8')) as { config: Record<string, unknown>; images: string[]; prompts: string[] };
const maxDiff = (a: torch.Tensor, b: torch.Tensor) => torch.tidy(() => a.double().sub(b.double()).abs().max().item());
const dir = mkdtempSync(join(tmpdir(), 'dpo-scoring-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let images: RawImage[] = [];
before(async () => {
  images = await Promise.all(caseJson.images.map(async (f) => decodeForScoring(readFileSync(join(fixturesDir, f)))));
});

describe('open_clip CLIP against open_clip 3.3', () => {
  test('the eval transform, the tokens, the normalised features and the scores', () => {
    const expected = torch.loadSafetensors(join(here, 'tiny_open_clip_case.safetensors'));
    const model = loadOpenClipModel(join(here, 'tiny_open_clip.pt'), caseJson.config);
    try {
      torch.tidy(() => torch.noGrad(() => {
        const pixels = preprocessBatch(images, openClipPreprocess(224));
        assert.equal(maxDiff(pixels, expected.get('pixel_values')!), 0, 'PIL bicubic (RGBA premultiplied), torchvision crop and float32 ToTensor/Normalize: exact');
        assert.equal(images[2]!.channels, 4, 'the RGBA fixture keeps its alpha until after the resize');
        const tokens = tokenizeOpenClip(CLIPTokenizer.fromFolder(join(fixturesDir, 'tokenizer')), caseJson.prompts, 77, 'cpu');
        assert.deepEqual(tokens.toArray(), expected.get('tokens')!.toArray(), 'html entities unescaped, truncated with eot last, padded with 0');
        const image = model.encodeImage(pixels, { normalize: true });
        const text = model.encodeText(tokens, { normalize: true });
        assert.ok(maxDiff(image, expected.get('image_features')!) < 1e-5, `image features ${maxDiff(image, expected.get('image_features')!)}`);
        assert.ok(maxDiff(text, expected.get('text_features')!) < 1e-5, `text features ${maxDiff(text, expected.get('text_features')!)}`);
        assert.ok(maxDiff(image.mul(text).sum(-1), expected.get('scores')!) < 1e-5);
      }));
    } finally {
      model.dispose();
      for (const t of expected.values()) t.dispose();
    }
  });

  test('html.unescape as open_clip\'s basic_clean applies it', () => {
    assert.equal(htmlUnescape('a &amp; b &lt;3 &#39;x&#x27; &bogus;'), 'a & b <3 \'x\' &bogus;');
    assert.equal(htmlUnescape(htmlUnescape('&amp;amp;')), '&');
  });
});

describe('scorers through loadScorer', () => {
  test('pickscore on the tiny CLIP: logit_scale.exp() x cosine, transformers\' numbers for each image with its prompt', async () => {
    const scorer = await loadScorer('pickscore', { model: join(fixturesDir, 'tiny-clip'), processor: join(fixturesDir, 'tokenizer'), batchSize: 2 });
    try {
      const prompts = (JSON.parse(readFileSync(join(fixturesDir, 'cases', 'pickscore_tiny_clip.json'), 'utf8')) as { prompts: string[] }).prompts;
      const scores = await scorer.score(images.map((image, i) => ({ image, prompt: prompts[i]! })));
      const expected = torch.tidy(() => {
        const f = torch.SafetensorsFile.open(join(fixturesDir, 'cases', 'pickscore_tiny_clip.safetensors'));
        const scaled = f.get('scaled_scores').toArray();
        f.close();
        return [0, 1, 2].map((i) => scaled[i * 3 + i]!);
      });
      scores.forEach((s, i) => assert.ok(Math.abs(s - expected[i]!) < 1e-4, `image ${i}: ${s} vs ${expected[i]}`));
      assert.match(scorer.description, /pickscore: .*tiny-clip \(processor .*tokenizer\)/);
    } finally {
      scorer.dispose();
    }
  });

  test('hpsv2 from a {\'state_dict\'} checkpoint: open_clip\'s scores', async () => {
    // an HPS-style file of another architecture carries its config beside it
    const file = join(dir, 'HPS_v2_compressed.pt');
    copyFileSync(join(here, 'tiny_open_clip.pt'), file);
    writeFileSync(join(dir, 'open_clip_config.json'), JSON.stringify({ model_cfg: caseJson.config }));
    const scorer = await loadScorer('hpsv2', { model: file, processor: join(fixturesDir, 'tokenizer') });
    try {
      const scores = await scorer.score(images.map((image, i) => ({ image, prompt: caseJson.prompts[i]! })));
      const expected = torch.tidy(() => torch.loadSafetensors(join(here, 'tiny_open_clip_case.safetensors')).get('scores')!.toArray());
      scores.forEach((s, i) => assert.ok(Math.abs(s - expected[i]!) < 1e-5, `image ${i}: ${s} vs ${expected[i]}`));
    } finally {
      scorer.dispose();
    }
  });

  test('clip: a folder with open_clip weights stays open_clip even with a config.json beside them (the laion repos hold both)', async () => {
    const folder = join(dir, 'laion-like');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(folder, { recursive: true });
    copyFileSync(join(here, 'tiny_open_clip.pt'), join(folder, 'open_clip_pytorch_model.bin'));
    writeFileSync(join(folder, 'open_clip_config.json'), JSON.stringify({ model_cfg: caseJson.config }));
    writeFileSync(join(folder, 'config.json'), JSON.stringify({ architectures: ['CLIPModel'] }));
    const scorer = await loadScorer('clip', { model: folder, processor: join(fixturesDir, 'tokenizer') });
    try {
      assert.doesNotMatch(scorer.description, /transformers/);
      const scores = await scorer.score(images.map((image, i) => ({ image, prompt: caseJson.prompts[i]! })));
      const expected = torch.tidy(() => torch.loadSafetensors(join(here, 'tiny_open_clip_case.safetensors')).get('scores')!.toArray());
      scores.forEach((s, i) => assert.ok(Math.abs(s - expected[i]!) < 1e-5, `image ${i}: ${s} vs ${expected[i]}`));
    } finally {
      scorer.dispose();
    }
  });

  test('aesthetics: the head on the L2-normalised image embedding of a 768-wide CLIP; a narrower CLIP is refused', async () => {
    const config = JSON.parse(readFileSync(join(fixturesDir, 'tiny-clip', 'config.json'), 'utf8')) as Record<string, unknown>;
    const wide = join(dir, 'clip768');
    const cfg768 = { ...config, projection_dim: 768 };
    torch.manualSeed(5);
    const model = new CLIPModel(cfg768);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(wide, { recursive: true });
    torch.saveSafetensors(join(wide, 'model.safetensors'), model.stateDict());
    writeFileSync(join(wide, 'config.json'), JSON.stringify(cfg768));
    copyFileSync(join(fixturesDir, 'tiny-clip', 'preprocessor_config.json'), join(wide, 'preprocessor_config.json'));
    model.dispose();
    const scorer = await loadScorer('aesthetics', { model: wide, processor: join(fixturesDir, 'tokenizer') });
    try {
      const scores = await scorer.score(images.map((image) => ({ image, prompt: 'unused' })));
      const expected = torch.tidy(() => torch.noGrad(() => {
        const clip = loadCLIPModel(wide);
        const head = AestheticsHead.load();
        const { clipImageProcessorConfig } = awaitedPreprocess;
        const pre = clipImageProcessorConfig(JSON.parse(readFileSync(join(wide, 'preprocessor_config.json'), 'utf8')) as Record<string, unknown>);
        const e = clip.imageFeatures(preprocessBatch(images, pre));
        const out = head.forward(e.div(e.norm(2, [-1], true))).flatten().toArray();
        clip.dispose();
        head.dispose();
        return out;
      }));
      scores.forEach((s, i) => assert.ok(Math.abs(s - expected[i]!) < 1e-5, `${s} vs ${expected[i]}`));
      assert.ok(scores.every((s) => Number.isFinite(s)));
    } finally {
      scorer.dispose();
    }
    await assert.rejects(loadScorer('aesthetics', { model: join(fixturesDir, 'tiny-clip'), processor: join(fixturesDir, 'tokenizer') }), /reads 768-wide image embeddings .*this model's are 24/);
  });

  test('demo_oracle: warmth, mean (red - blue) / 255: red 1, blue -1, grey 0; it agrees with every label of the demo\'s preference data', async () => {
    const { writeWarmPreferenceSet } = await import('./helpers/tiny_pipeline.js');
    const { decodeRGB } = await import('../src/data/decode.js');
    const scorer = await loadScorer('demo_oracle');
    const solid = (rgb: number[], channels = 3): RawImage => ({ width: 2, height: 1, channels, data: new Uint8Array([...rgb, ...(channels === 4 ? [255] : []), ...rgb, ...(channels === 4 ? [0] : [])]) });
    assert.deepEqual(await scorer.score([{ image: solid([255, 0, 0]), prompt: '' }, { image: solid([0, 0, 255]), prompt: '' }, { image: solid([9, 9, 9], 4), prompt: '' }]), [1, -1, 0]);
    const jsonl = await writeWarmPreferenceSet(join(dir, 'warm'), 12, 16, 7);
    for (const line of readFileSync(jsonl, 'utf8').trim().split('\n')) {
      const r = JSON.parse(line) as { image_0: string; image_1: string; label_0: number };
      const [a, b] = await Promise.all([r.image_0, r.image_1].map(async (f) => decodeRGB(readFileSync(join(dir, 'warm', f)))));
      const [sa, sb] = await scorer.score([{ image: a!, prompt: '' }, { image: b!, prompt: '' }]);
      assert.equal(sa! > sb! ? 1 : 0, r.label_0);
    }
    await assert.rejects(loadScorer('demo_oracle', { model: 'x' }), /takes no model/);
  });

  test('a folder without weights, a file of the wrong kind, and no tokenizer are refused by name', async () => {
    await assert.rejects(loadScorer('hpsv2', { model: join(fixturesDir, 'tokenizer') }), /no HPS_v2_compressed\.pt here/);
    await assert.rejects(loadScorer('clip', { model: join(fixturesDir, 'tiny-clip', 'config.json') }), /expected an open_clip checkpoint/);
    await assert.rejects(loadScorer('pickscore', { model: join(fixturesDir, 'tiny-clip'), processor: join(fixturesDir, 'tiny-sd') }), /tiny-sd: no tokenizer/);
  });
});

const awaitedPreprocess = await import('../src/scoring/preprocess.js');
