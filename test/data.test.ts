// The preference data pipeline on generated Pick-a-Pic-style shards: filtering counts, pair
// order, exact batch order for a seed, identical batches after save/restore, rank sharding,
// bad rows counted, worker threads, and users' own JSONL/CSV/folder data.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PreferenceDataset } from '../src/data/dataset.js';
import { PairLoader, type Batch } from '../src/data/loader.js';
import { jpeg, makeRows, writeShard } from './helpers/pickapic.js';

const dir = mkdtempSync(join(tmpdir(), 'dpo-data-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const RES = 16;

before(async () => {
  mkdirSync(join(dir, 'pickapic', 'data'), { recursive: true });
  const rows = await makeRows(60, { tieEvery: 10, dreamEvery: 3 });
  // two train shards with several row groups each, and a validation shard that must be ignored
  writeShard(join(dir, 'pickapic', 'data', 'train-00000-of-00002.parquet'), rows.slice(0, 30), { rowGroupSize: 7 });
  writeShard(join(dir, 'pickapic', 'data', 'train-00001-of-00002.parquet'), rows.slice(30), { rowGroupSize: 9, imageStruct: true });
  writeShard(join(dir, 'pickapic', 'data', 'validation-00000-of-00001.parquet'), rows.slice(0, 5));
  // bad rows of every kind
  const good = await makeRows(6);
  const truncated = good[0]!.jpg0!.subarray(0, 200);
  const bad = [
    { ...good[0]!, jpg0: new Uint8Array([1, 2, 3, 4]) }, // undecodable
    { ...good[1]!, jpg1: truncated }, // truncated JPEG
    { ...good[2]!, caption: null }, // null caption
    { ...good[3]!, label0: 0.7, label1: 0.3 }, // label outside {0, 0.5, 1}
    { ...good[4]!, jpg1: null }, // missing image
    good[5]!,
  ];
  mkdirSync(join(dir, 'bad'));
  writeShard(join(dir, 'bad', 'train-00000-of-00001.parquet'), bad);
});

async function epoch(loader: PairLoader): Promise<Batch[]> {
  const out: Batch[] = [];
  for (let b = await loader.next(); b; b = await loader.next()) out.push(b);
  return out;
}

/** Mean of the red minus the blue channel of an image's 3 planes: > 0 for the warm (preferred) images. */
/** Mean red minus blue of the image at `offset`, on the [-1, 1] scale. */
function warmth(px: Uint8Array, offset: number, res: number): number {
  const plane = res * res;
  let s = 0;
  for (let i = 0; i < plane; i++) s += (px[offset + i]! - px[offset + 2 * plane + i]!) / 127.5;
  return s / plane;
}

describe('Pick-a-Pic parquet', () => {
  test('split, tie removal and the dreamlike filter count rows as the reference does', async () => {
    const ds = await PreferenceDataset.open(join(dir, 'pickapic'), { split: 'train' });
    assert.equal(ds.stats.rowsRead, 60);
    assert.equal(ds.stats.tiesRemoved, 6);
    assert.equal(ds.stats.kept, 54);
    const dream = await PreferenceDataset.open(join(dir, 'pickapic'), { dreamlikePairsOnly: true });
    // rows 0, 3, ..., 57 are dreamlike (20); of those, 0, 30 are ties
    assert.equal(dream.stats.kept, 18);
    assert.equal(dream.stats.bad.not_dreamlike, 36);
    const val = await PreferenceDataset.open(join(dir, 'pickapic'), { split: 'validation' });
    assert.equal(val.stats.rowsRead, 5);
    const capped = await PreferenceDataset.open(join(dir, 'pickapic'), { maxTrainSamples: 10, seed: 3 });
    assert.equal(capped.length, 10);
    assert.notDeepEqual(capped.indices, ds.indices.slice(0, 10), 'a seeded shuffle, not the first rows');
  });

  test('pairs put the preferred image first (swapped when label_0 == 0), 6 uint8 channels', async () => {
    const ds = await PreferenceDataset.open(join(dir, 'pickapic'));
    const loader = new PairLoader(ds, { batchSize: 4, resolution: RES, seed: 1, hflip: false });
    const b = (await loader.next())!;
    assert.deepEqual(b.shape, [4, 6, RES, RES]);
    for (let i = 0; i < 4; i++) {
      const base = i * 6 * RES * RES;
      assert.ok(warmth(b.pixels!, base, RES) > 0.5, `sample ${i}: preferred (warm) image first`);
      assert.ok(warmth(b.pixels!, base + 3 * RES * RES, RES) < -0.5, `sample ${i}: dispreferred (cool) image second`);
    }
    assert.ok(b.pixels instanceof Uint8Array && b.pixels.length === 4 * 6 * RES * RES, 'uint8, scaled on the device');
    assert.match(b.captions[0]!, /^row \d+$/);
    await loader.close();
  });

  test('a seed fixes the batch order; another seed changes it; every kept row appears once per epoch', async () => {
    const ds = await PreferenceDataset.open(join(dir, 'pickapic'));
    const rows = async (seed: number) => {
      const l = new PairLoader(ds, { batchSize: 5, resolution: RES, seed });
      const r = (await epoch(l)).flatMap((b) => b.rows);
      await l.close();
      return r;
    };
    const a = await rows(7);
    assert.deepEqual(await rows(7), a);
    assert.notDeepEqual(await rows(8), a);
    assert.equal(a.length, 50, '54 rows, batches of 5, the last 4 dropped');
    assert.equal(new Set(a).size, 50);
  });

  test('save/restore at an arbitrary step gives exactly the batches of an uninterrupted run', async () => {
    const ds = await PreferenceDataset.open(join(dir, 'pickapic'));
    const opts = { batchSize: 3, resolution: RES, seed: 11, randomCrop: true, proportionEmptyPrompts: 0.3 };
    const full = new PairLoader(ds, opts);
    const all: Batch[] = [];
    for (let i = 0; i < 25; i++) {
      let b = await full.next();
      if (!b) b = await full.next(); // the epoch boundary
      all.push(b!);
    }
    await full.close();
    const first = new PairLoader(ds, opts);
    for (let i = 0; i < 13; i++) await first.next();
    const saved = JSON.parse(JSON.stringify(first.state()));
    await first.close();
    const resumed = new PairLoader(ds, opts);
    resumed.setState(saved);
    for (let i = 13; i < 25; i++) {
      let b = await resumed.next();
      if (!b) b = await resumed.next();
      assert.deepEqual(b!.rows, all[i]!.rows, `batch ${i} rows`);
      assert.deepEqual(b!.captions, all[i]!.captions, `batch ${i} captions`);
      assert.deepEqual(b!.pixels, all[i]!.pixels, `batch ${i} pixels`);
    }
    await resumed.close();
  });

  test('ranks split every epoch into disjoint parts that cover the rows', async () => {
    const ds = await PreferenceDataset.open(join(dir, 'pickapic'));
    const seen: number[] = [];
    for (let rank = 0; rank < 3; rank++) {
      const l = new PairLoader(ds, { batchSize: 1, resolution: RES, seed: 5, rank, worldSize: 3 });
      assert.equal(l.stepsPerEpoch, 18);
      seen.push(...(await epoch(l)).flatMap((b) => b.rows));
      await l.close();
    }
    assert.equal(seen.length, 54);
    assert.deepEqual([...new Set(seen)].sort((a, b) => a - b), [...ds.indices].sort((a, b) => a - b));
  });

  test('worker threads produce the same batches as the main thread', async () => {
    const ds = await PreferenceDataset.open(join(dir, 'pickapic'));
    const opts = { batchSize: 4, resolution: RES, seed: 2, randomCrop: true };
    const main = new PairLoader(ds, opts);
    const workers = new PairLoader(ds, { ...opts, numWorkers: 2 });
    for (let i = 0; i < 3; i++) {
      const [a, b] = [await main.next(), await workers.next()];
      assert.deepEqual(b!.pixels, a!.pixels);
    }
    await main.close();
    await workers.close();
  });

  test('bad rows are skipped and counted by reason, not fatal', async () => {
    const ds = await PreferenceDataset.open(join(dir, 'bad'));
    assert.equal(ds.stats.bad.bad_label, 1);
    const loader = new PairLoader(ds, { batchSize: 1, resolution: RES, shuffle: false });
    const batches = await epoch(loader);
    assert.equal(batches.length, 1, 'only the good row makes a batch');
    assert.deepEqual(loader.badRows, { undecodable_image: 2, null_caption: 1, missing_image: 1 });
    await loader.close();
  });

  test('a wrong path or an unreadable shard is a clear error naming the file', async () => {
    await assert.rejects(PreferenceDataset.open(join(dir, 'nope')), /nope: no such file or folder/);
    const broken = join(dir, 'broken');
    mkdirSync(broken);
    writeFileSync(join(broken, 'train-00000-of-00001.parquet'), 'not parquet at all');
    await assert.rejects(PreferenceDataset.open(broken), /train-00000-of-00001\.parquet: cannot read as parquet/);
  });
});

describe("users' own data", () => {
  test('JSONL and CSV tables with image paths relative to the file', async () => {
    const t = join(dir, 'table');
    mkdirSync(t);
    writeFileSync(join(t, 'a.jpg'), await jpeg([200, 40, 40]));
    writeFileSync(join(t, 'b.jpg'), await jpeg([40, 40, 200]));
    writeFileSync(join(t, 'pairs.jsonl'), [
      JSON.stringify({ caption: 'warm wins', image_0: 'a.jpg', image_1: 'b.jpg', label_0: 1 }),
      JSON.stringify({ caption: 'warm wins again', image_0: 'b.jpg', image_1: 'a.jpg', label_0: 0 }),
      '{broken json',
      JSON.stringify({ caption: 'tie', image_0: 'a.jpg', image_1: 'b.jpg', label_0: 0.5 }),
    ].join('\n'));
    writeFileSync(join(t, 'pairs.csv'), 'caption,image_0,image_1,label_0\n"warm, wins",a.jpg,b.jpg,1\nmissing,a.jpg,zzz.jpg,1\n');
    const ds = await PreferenceDataset.open(join(t, 'pairs.jsonl'));
    assert.equal(ds.stats.kept, 2);
    assert.equal(ds.stats.tiesRemoved, 1);
    assert.equal(ds.stats.bad.bad_label, 1, 'the unparseable line');
    const l = new PairLoader(ds, { batchSize: 2, resolution: RES, shuffle: false, hflip: false });
    const b = (await l.next())!;
    assert.ok(warmth(b.pixels!, 0, RES) > 0.5 && warmth(b.pixels!, 6 * RES * RES, RES) > 0.5);
    await l.close();
    const csv = await PreferenceDataset.open(join(t, 'pairs.csv'));
    const lc = new PairLoader(csv, { batchSize: 1, resolution: RES, shuffle: false });
    const batches = await epoch(lc);
    assert.equal(batches.length, 1);
    assert.equal(batches[0]!.captions[0], 'warm, wins');
    assert.equal(lc.badRows.missing_image, 1);
    await lc.close();
  });

  test('a w/ + l/ folder paired by file name, captions from .txt files or metadata.jsonl; SFT keeps the winner', async () => {
    const f = join(dir, 'folder');
    mkdirSync(join(f, 'w'), { recursive: true });
    mkdirSync(join(f, 'l'));
    for (const n of ['p1', 'p2', 'p3']) {
      writeFileSync(join(f, 'w', `${n}.jpg`), await jpeg([200, 40, 40]));
      writeFileSync(join(f, 'l', `${n}.png`), await jpeg([40, 40, 200]));
    }
    writeFileSync(join(f, 'p1.txt'), 'first caption\n');
    writeFileSync(join(f, 'metadata.jsonl'), `${JSON.stringify({ file_name: 'w/p2.jpg', caption: 'second caption' })}\n`);
    const ds = await PreferenceDataset.open(f);
    assert.equal(ds.stats.kept, 3);
    const l = new PairLoader(ds, { batchSize: 1, resolution: RES, shuffle: false });
    const batches = await epoch(l);
    assert.deepEqual(batches.map((b) => b.captions[0]), ['first caption', 'second caption']);
    assert.equal(l.badRows.null_caption, 1);
    await l.close();
    const sft = await PreferenceDataset.open(f, { method: 'sft' });
    const ls = new PairLoader(sft, { batchSize: 2, resolution: RES, shuffle: false, hflip: false });
    const b = (await ls.next())!;
    assert.deepEqual(b.shape, [2, 3, RES, RES]);
    assert.ok(warmth(b.pixels!, 0, RES) > 0.5);
    await ls.close();
  });
});

describe('WebDataset tar shards', () => {
  test('samples grouped by key, fields from the .json member; the same filters, pairs and batches as parquet', async () => {
    const { writeTarShard, tarBuffer } = await import('./helpers/pickapic.js');
    const t = join(dir, 'tars');
    mkdirSync(t);
    const rows = await makeRows(20, { tieEvery: 5 });
    writeTarShard(join(t, 'train-000000.tar'), rows.slice(0, 12));
    writeTarShard(join(t, 'train-000001.tar'), rows.slice(12));
    const ds = await PreferenceDataset.open(t);
    assert.equal(ds.stats.rowsRead, 20);
    assert.equal(ds.stats.tiesRemoved, 4);
    const l = new PairLoader(ds, { batchSize: 4, resolution: RES, seed: 3, hflip: false });
    const b = (await l.next())!;
    assert.ok(warmth(b.pixels!, 0, RES) > 0.5 && warmth(b.pixels!, 3 * RES * RES, RES) < -0.5);
    assert.match(b.captions[0]!, /^row \d+$/);
    await l.close();
    // per-key scalar members instead of JSON
    const single = join(dir, 'single.tar');
    writeFileSync(single, tarBuffer([
      { name: 'a/000001.jpg_0', data: rows[1]!.jpg0! }, { name: 'a/000001.jpg_1', data: rows[1]!.jpg1! },
      { name: 'a/000001.caption', data: 'from a member' }, { name: 'a/000001.label_0', data: '0' }, { name: 'a/000001.label_1', data: '1' },
    ]));
    const ds2 = await PreferenceDataset.open(single);
    const l2 = new PairLoader(ds2, { batchSize: 1, resolution: RES, shuffle: false });
    assert.deepEqual((await l2.next())!.captions, ['from a member']);
    await l2.close();
    const truncated = join(dir, 'truncated.tar');
    writeFileSync(truncated, tarBuffer([{ name: 'x.jpg_0', data: rows[0]!.jpg0! }]).subarray(0, 700));
    await assert.rejects(PreferenceDataset.open(truncated), /truncated\.tar: member 'x\.jpg_0' runs past the end of the file/);
  });
});

describe('decoding and the tokenisation hook', () => {
  test('WebP, grayscale, CMYK, alpha and EXIF-rotated images all decode to RGB', async () => {
    const sharp = (await import('sharp')).default;
    const { decodeRGB } = await import('../src/data/decode.js');
    const rgb = Buffer.alloc(8 * 4 * 3, 0);
    for (let i = 0; i < 8 * 4; i++) rgb[i * 3] = 255; // pure red, 8 wide, 4 high
    const raw = { raw: { width: 8, height: 4, channels: 3 as const } };
    const webp = await sharp(rgb, raw).webp({ lossless: true }).toBuffer();
    const gray = await sharp(Buffer.alloc(16, 128), { raw: { width: 4, height: 4, channels: 1 } }).png().toBuffer();
    const cmyk = await sharp(rgb, raw).toColourspace('cmyk').jpeg().toBuffer();
    const rgba = await sharp(Buffer.alloc(4 * 4 * 4, 200), { raw: { width: 4, height: 4, channels: 4 } }).png().toBuffer();
    const rotated = await sharp(rgb, raw).jpeg().withMetadata({ orientation: 6 }).toBuffer(); // 90 degrees clockwise
    const w = await decodeRGB(webp);
    assert.deepEqual([w.width, w.height, w.data[0], w.data[1]], [8, 4, 255, 0]);
    const g = await decodeRGB(gray);
    assert.deepEqual([...g.data.subarray(0, 3)], [128, 128, 128], 'gray replicated to 3 channels');
    const c = await decodeRGB(cmyk);
    assert.equal(c.channels, 3);
    assert.ok(c.data[0]! > 200 && c.data[2]! < 60, 'CMYK converted to (roughly) red');
    const a = await decodeRGB(rgba);
    assert.deepEqual([a.channels, a.data[0]], [3, 200], 'alpha dropped, not composited');
    const r = await decodeRGB(rotated);
    assert.deepEqual([r.width, r.height], [4, 8], 'EXIF orientation applied');
    await assert.rejects(decodeRGB(new Uint8Array([0xff, 0xd8, 0xff])), (e: Error) => e.name === 'ImageDecodeError');
  });

  test('a tokenize hook adds input ids to every batch', async () => {
    const ds = await PreferenceDataset.open(join(dir, 'pickapic'));
    const l = new PairLoader(ds, { batchSize: 2, resolution: RES, tokenize: (caps) => caps.map((c) => [c.length]) });
    const b = (await l.next())!;
    assert.deepEqual(b.inputIds, b.captions.map((c) => [c.length]));
    await l.close();
  });
});
