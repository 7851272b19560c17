// CLIPTokenizer: the fixtures' 47 prompts x 4 variants are checked by the parity test; here the
// API (padding, truncation, special tokens, loading formats) and the ftfy repairs one by one.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CLIPTokenizer } from '../src/tokenizers/clip.js';
import { fixText } from '../src/tokenizers/ftfy.js';
import { fixturesDir } from './helpers/fixtures.js';

const tok = CLIPTokenizer.fromFolder(join(fixturesDir, 'tokenizer'));
const dir = mkdtempSync(join(tmpdir(), 'dpo-tok-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('CLIPTokenizer', () => {
  test('"a photo of a cat" (the fixtures README check)', () => {
    assert.deepEqual(tok.encodeUntruncated('a photo of a cat'), [49406, 320, 1125, 539, 320, 2368, 49407]);
    const enc = tok.encode('a photo of a cat');
    assert.equal(enc.inputIds.length, 77);
    assert.deepEqual(enc.inputIds.slice(7), new Array(70).fill(49407));
    assert.equal(enc.attentionMask.reduce((a, b) => a + b, 0), 7);
    assert.equal(tok.decode(enc.inputIds, { skipSpecialTokens: true }), 'a photo of a cat');
  });

  test('long prompts are cut to 75 tokens plus <|startoftext|> and <|endoftext|>', () => {
    const enc = tok.encode(Array.from({ length: 100 }, () => 'cat').join(' '));
    assert.equal(enc.inputIds.length, 77);
    assert.equal(enc.inputIds[0], 49406);
    assert.equal(enc.inputIds[76], 49407);
    assert.ok(enc.attentionMask.every((m) => m === 1));
  });

  test('tokenizer.json loads to the same ids as vocab.json + merges.txt', () => {
    const vocab = JSON.parse(readFileSync(join(fixturesDir, 'tokenizer', 'vocab.json'), 'utf8')) as Record<string, number>;
    const merges = readFileSync(join(fixturesDir, 'tokenizer', 'merges.txt'), 'utf8').trim().split('\n').slice(1);
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({ model: { type: 'BPE', vocab, merges } }));
    const t2 = CLIPTokenizer.fromFolder(dir);
    const prompt = 'A typhoon in a tea cup, digital render';
    assert.deepEqual(t2.encode(prompt).inputIds, tok.encode(prompt).inputIds);
    assert.throws(() => CLIPTokenizer.fromFolder(join(dir, 'none')), /no tokenizer files/);
  });

  test("SDXL's tokenizer_2 pads with '!' (id 0)", () => {
    const t2 = CLIPTokenizer.fromFolder(join(fixturesDir, 'tiny-sdxl', 'tokenizer_2'));
    assert.equal(t2.padTokenId, 0);
    assert.deepEqual(t2.encode('a cat').inputIds.slice(0, 5), [49406, 320, 2368, 49407, 0]);
  });
});

describe('ftfy repairs', () => {
  test('each step, as ftfy.fix_text does it', () => {
    assert.equal(fixText('Tom &amp; Jerry &lt;3 &#39;x&#39;'), "Tom & Jerry <3 'x'");
    assert.equal(fixText('a < b &amp; c'), 'a < b &amp; c', "text with '<' is left unescaped ('auto')");
    assert.equal(fixText('cafÃ© donâ€™t'), "café don't");
    assert.equal(fixText('ﬁne ǅ'), 'fine Dž');
    assert.equal(fixText('ＡＢＣ１２３　x'), 'ABC123 x');
    assert.equal(fixText('“q” ‘a’'), '"q" \'a\'');
    assert.equal(fixText('a\r\nb\u2028c'), 'a\nb\nc');
    assert.equal(fixText('x\ufeffy\u200bz\u0007'), 'xy\u200bz');
    assert.equal(fixText('e\u0301'), 'é', 'NFC');
    assert.equal(fixText('Ünïcödé naïve'), 'Ünïcödé naïve', 'correct accented text is not "repaired"');
  });
});
