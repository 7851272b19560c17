// The latent cache end to end, as a user runs it: `cache` then `train --latent_cache` gives the
// losses and weights of a run from the images (tiny SD with flips, caption dropout, caption lists
// and an unusable row: bit-identical, also across a resume; tiny SDXL encoded in other batch sizes: within a stated tolerance); a build killed with SIGKILL and run again writes the same bytes
// as one that was never interrupted; a cache that does not fit the run is refused, naming why.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { writeTinyPipeline, writeWarmPreferenceSet } from './helpers/tiny_pipeline.js';
import { fixturesDir } from './helpers/fixtures.js';
import { assertSameUNet, bin, metricsRows, runCli, runTrain } from './helpers/train_cli.js';

const dir = mkdtempSync(join(tmpdir(), 'dpo-cache-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const model = join(dir, 'model');
let data = '';

before(async () => {
  writeTinyPipeline(model, 2);
  data = await writeWarmPreferenceSet(join(dir, 'data'), 16, 16, 5);
  // a row with a list of captions, and one whose image is missing: the cache must treat both as the image loader does
  appendFileSync(data, JSON.stringify({ caption: ['a red cube', 'a cube, red', 'red cube'], image_0: 'images/0_0.png', image_1: 'images/0_1.png', label_0: 1 }) + '\n');
  appendFileSync(data, JSON.stringify({ caption: 'gone', image_0: 'images/missing.png', image_1: 'images/0_1.png', label_0: 1 }) + '\n');
});

const modelFlags = (m = model, d = () => data) => ['--pretrained_model_name_or_path', m, '--dataset_name', d(), '--resolution', '16', '--mixed_precision', 'no'];

function trainFlags(out: string, extra: string[] = []): string[] {
  return [...modelFlags(), '--output_dir', out, '--train_batch_size', '2', '--gradient_accumulation_steps', '2', '--max_train_steps', '5',
    '--learning_rate', '1e-3', '--lr_scheduler', 'constant', '--lr_warmup_steps', '0', '--checkpointing_steps', '5', '--seed', '4',
    '--proportion_empty_prompts', '0.3', '--max_bad_fraction', '0.2', ...extra];
}

function cache(out: string, extra: string[] = []) {
  return runCli(['cache', ...modelFlags(), '--output_dir', out, '--rows_per_shard', '4', '--encode_batch_size', '3', ...extra]);
}

describe('train from a latent cache', () => {
  test('SD: the losses and weights of the run from the images (flips, caption dropout and lists, an unusable row)', async () => {
    // encoded 4 images at a time, as the run's VAE sees them (2 pairs): the same arithmetic, so the same bits
    const c = await cache(join(dir, 'cache'), ['--encode_batch_size', '4']);
    assert.equal(c.code, 0, c.err);
    const summary = JSON.parse(c.out) as { rows: number; cached: number; unusable_by_reason: Record<string, number>; shards: number; bytes_per_row: number };
    assert.deepEqual([summary.rows, summary.cached, summary.shards], [18, 17, 5]);
    assert.deepEqual(summary.unusable_by_reason, { missing_image: 1 });
    assert.ok(summary.bytes_per_row > 0);

    const images = await runTrain(trainFlags(join(dir, 'from-images')));
    assert.equal(images.code, 0, images.err);
    const cached = await runTrain(trainFlags(join(dir, 'from-cache'), ['--latent_cache', join(dir, 'cache')]));
    assert.equal(cached.code, 0, cached.err);
    assert.match(cached.err, /VAE and text encoders not loaded \(latent cache/);
    // the same draws, the same encodings (the VAE and text encoder are deterministic on the CPU): equal to the last bit here
    assert.deepEqual(metricsRows(join(dir, 'from-cache')).map((r) => r.train_loss), metricsRows(join(dir, 'from-images')).map((r) => r.train_loss));
    assert.deepEqual(metricsRows(join(dir, 'from-cache')).map((r) => r.bad_rows), metricsRows(join(dir, 'from-images')).map((r) => r.bad_rows));
    assertSameUNet(join(dir, 'from-images'), join(dir, 'from-cache'), 'from the images and from the cache');
    // the final pipeline is complete: the frozen components copied from the model
    for (const f of ['vae/config.json', 'text_encoder/config.json', 'tokenizer/vocab.json', 'model_index.json']) assert.ok(existsSync(join(dir, 'from-cache', f)), f);
  });

  test('a run from the cache killed after a checkpoint and resumed ends as the uninterrupted one, bit for bit', async () => {
    const whole = join(dir, 'from-cache'); // the previous test's run: 5 updates, a checkpoint at 5
    const cut = join(dir, 'cache-resumed');
    const first = await runTrain(trainFlags(cut, ['--latent_cache', join(dir, 'cache'), '--max_train_steps', '2', '--checkpointing_steps', '2']));
    assert.equal(first.code, 0, first.err);
    const second = await runTrain(trainFlags(cut, ['--latent_cache', join(dir, 'cache')]));
    assert.equal(second.code, 0, second.err);
    assert.match(second.err, /resumed from .*checkpoint-2 at step 2/);
    assertSameUNet(whole, cut, 'resumed from the cache vs uninterrupted');
    assert.deepEqual(metricsRows(cut).map((r) => r.train_loss), metricsRows(whole).map((r) => r.train_loss));
  });

  test('SDXL: both encoders\' states and the pooled embeds come from the cache; the same losses', async () => {
    const sdxl = join(fixturesDir, 'tiny-sdxl');
    const sdxlData = await writeWarmPreferenceSet(join(dir, 'sdxl-data'), 6, 32, 2);
    const flags = ['--pretrained_model_name_or_path', sdxl, '--dataset_name', sdxlData, '--sdxl', '--resolution', '32', '--mixed_precision', 'no'];
    const c = await runCli(['cache', ...flags, '--output_dir', join(dir, 'sdxl-cache'), '--encode_batch_size', '8']);
    assert.equal(c.code, 0, c.err);
    const run = (out: string, extra: string[] = []) => runTrain([...flags, '--output_dir', out, '--train_batch_size', '2', '--max_train_steps', '3',
      '--learning_rate', '1e-3', '--lr_scheduler', 'constant', '--lr_warmup_steps', '0', '--checkpointing_steps', '3', '--seed', '1', ...extra]);
    const a = await run(join(dir, 'sdxl-images'));
    assert.equal(a.code, 0, a.err);
    const b = await run(join(dir, 'sdxl-cached'), ['--latent_cache', join(dir, 'sdxl-cache')]);
    assert.equal(b.code, 0, b.err);
    // encoded 8 at a time while the run's VAE sees 4: a convolution over another batch size rounds
    // differently in the last bits. Stated tolerance: the MSEs within 1e-5 relative, and the loss,
    // which beta_dpo (5000) multiplies the MSE differences by, within 1e-3 relative
    const ra = metricsRows(join(dir, 'sdxl-images'));
    const rb = metricsRows(join(dir, 'sdxl-cached'));
    assert.equal(rb.length, ra.length);
    const close = (x: number, y: number, rel: number) => Math.abs(x - y) <= rel * Math.max(1, Math.abs(x));
    ra.forEach((r, i) => {
      const q = rb[i]!;
      assert.ok(close(r.model_mse_unaccumulated!, q.model_mse_unaccumulated!, 1e-5) && close(r.ref_mse_unaccumulated!, q.ref_mse_unaccumulated!, 1e-5), `step ${i + 1}: MSEs ${JSON.stringify([r, q])}`);
      assert.ok(close(r.train_loss!, q.train_loss!, 1e-3), `step ${i + 1}: loss ${r.train_loss} vs ${q.train_loss}`);
    });
  });
});

describe('building a cache', () => {
  test('a build killed with SIGKILL and run again writes the bytes of an uninterrupted build', async () => {
    const whole = join(dir, 'whole');
    const w = await cache(whole, ['--rows_per_shard', '1']);
    assert.equal(w.code, 0, w.err);
    const killed = join(dir, 'killed');
    const args = ['cache', ...modelFlags(), '--output_dir', killed, '--rows_per_shard', '1', '--encode_batch_size', '3'];
    const p = spawn(process.execPath, [bin, ...args], { env: { ...process.env, DPO_NUM_THREADS: '1' } });
    let err = '';
    p.stderr.on('data', (d: Buffer) => {
      err += d;
      if (/cache 3\/18/.test(err) && !p.killed) p.kill('SIGKILL');
    });
    await new Promise((r) => p.on('close', r));
    const manifest = JSON.parse(readFileSync(join(killed, 'manifest.json'), 'utf8')) as { complete: boolean; shards: (string | null)[] };
    assert.equal(manifest.complete, false, 'killed before the end');
    const again = await runCli(args);
    assert.equal(again.code, 0, again.err);
    assert.match(again.err, /resuming: \d+ of 18 shards are done/);
    const files = readdirSync(whole).filter((f) => f.endsWith('.safetensors')).sort();
    assert.deepEqual(readdirSync(killed).filter((f) => f.endsWith('.safetensors')).sort(), files);
    for (const f of files) assert.ok(readFileSync(join(killed, f)).equals(readFileSync(join(whole, f))), `${f} differs`);
    const again2 = await runCli(args);
    assert.match(again2.err, /is complete already/);
  });

  test('resuming with other settings, or caching random crops, is refused', async () => {
    const other = await cache(join(dir, 'cache'), ['--no_hflip']);
    assert.equal(other.code, 1);
    assert.match(other.err, /holds a cache made with other settings \(hflip: "both" -> "none"/);
    const crop = await cache(join(dir, 'crop'), ['--random_crop']);
    assert.equal(crop.code, 2);
    assert.match(crop.err, /--random_crop cannot be cached/);
    const subset = await cache(join(dir, 'subset'), ['--max_train_samples', '4']);
    assert.equal(subset.code, 2);
    assert.match(subset.err, /--max_train_samples picks its rows with --seed/);
  });
});

describe('a cache that does not fit the run is refused', () => {
  test('resolution, flips, dtype, encoders, rows, an incomplete cache, random crops', async () => {
    const c = join(dir, 'cache');
    const refused = async (extra: string[], pattern: RegExp, flags = trainFlags(join(dir, 'refused'), ['--latent_cache', c, ...extra])) => {
      const r = await runTrain(flags);
      assert.equal(r.code, extra.includes('--random_crop') ? 2 : 1, r.err);
      assert.match(r.err, pattern);
      assert.ok(!existsSync(join(dir, 'refused', 'checkpoint-5')));
    };
    await refused(['--resolution', '32'], /the cache does not fit this run \(resolution: 16 -> 32/);
    await refused(['--mixed_precision', 'bf16'], /weight_dtype: "float32" -> "bfloat16"/);
    await refused(['--random_crop'], /--random_crop cannot train from --latent_cache/);
    const unflipped = join(dir, 'unflipped');
    assert.equal((await cache(unflipped, ['--no_hflip'])).code, 0);
    await refused([], /hflip: the cache holds unflipped views only/, trainFlags(join(dir, 'refused'), ['--latent_cache', unflipped]));
    const noFlipRun = await runTrain(trainFlags(join(dir, 'noflip'), ['--latent_cache', unflipped, '--no_hflip', '--max_train_steps', '1']));
    assert.equal(noFlipRun.code, 0, noFlipRun.err);
    // other encoders: the same folder layout with another text encoder
    const other = join(dir, 'other-model');
    cpSync(model, other, { recursive: true });
    writeTinyPipeline(join(dir, 'scratch'), 9);
    cpSync(join(dir, 'scratch', 'text_encoder'), join(other, 'text_encoder'), { recursive: true });
    const moved = trainFlags(join(dir, 'refused'), ['--latent_cache', c]);
    moved[moved.indexOf(model)] = other;
    await refused([], /encoders_sha256: "[0-9a-f]{64}" -> "[0-9a-f]{64}"/, moved);
    // rows the cache lacks
    const few = join(dir, 'few');
    assert.equal((await cache(few, ['--max_train_samples', '6', '--seed', '3'])).code, 0);
    await refused([], /rows are not in the cache/, trainFlags(join(dir, 'refused'), ['--latent_cache', few]));
    // an interrupted build
    const partial = join(dir, 'partial');
    cpSync(c, partial, { recursive: true });
    const m = JSON.parse(readFileSync(join(partial, 'manifest.json'), 'utf8')) as { complete: boolean };
    writeFileSync(join(partial, 'manifest.json'), JSON.stringify({ ...m, complete: false }));
    await refused([], /the cache is incomplete .*run the same diffusion-dpo cache command again/, trainFlags(join(dir, 'refused'), ['--latent_cache', partial]));
  });
});
