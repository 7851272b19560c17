// The recipe's memory options and resume rules, end to end on a generated tiny pipeline:
// gradient checkpointing and frozen-model offload leave the trained weights bit-identical; a
// resume with changed batch settings is refused by name; a run started without --seed resumes
// with its own seed; background and synchronous checkpoint saves write the same bytes; --hard_skip_resume, --tracker_project_name and single-image SFT data do what
// they say; epochs that do not divide into updates end with a partial update, as accelerate's.
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { writeTinyPipeline, writeWarmPreferenceSet } from './helpers/tiny_pipeline.js';
import { assertSameUNet, metricsRows, runTrain } from './helpers/train_cli.js';

const dir = mkdtempSync(join(tmpdir(), 'dpo-recipe-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const model = join(dir, 'model');
let data = '';
/** stderr of the default run (background checkpoint saves). */
let plainLog = '';

before(async () => {
  writeTinyPipeline(model, 2);
  data = await writeWarmPreferenceSet(join(dir, 'data'), 16, 16, 5);
});

function flags(out: string, extra: string[] = []): string[] {
  return ['--pretrained_model_name_or_path', model, '--dataset_name', data, '--output_dir', out, '--resolution', '16',
    '--train_batch_size', '2', '--gradient_accumulation_steps', '2', '--max_train_steps', '4', '--learning_rate', '1e-3',
    '--lr_scheduler', 'constant', '--lr_warmup_steps', '0', '--checkpointing_steps', '2', '--mixed_precision', 'no',
    '--seed', '4', ...extra];
}

describe('memory options change nothing but memory', () => {
  test('--gradient_checkpointing: the same weights after four updates, bit for bit', async () => {
    const plain = join(dir, 'plain');
    const ckpt = join(dir, 'ckpt');
    const a = await runTrain(flags(plain));
    assert.equal(a.code, 0, a.err);
    plainLog = a.err;
    const b = await runTrain(flags(ckpt, ['--gradient_checkpointing']));
    assert.equal(b.code, 0, b.err);
    assert.match(b.err, /gradient checkpointing on/);
    assertSameUNet(plain, ckpt, 'with and without gradient checkpointing');
    assert.deepEqual(metricsRows(ckpt).map((r) => r.train_loss), metricsRows(plain).map((r) => r.train_loss));
  });

  test('--offload_frozen: the same weights; the frozen models are moved per call', async () => {
    const off = join(dir, 'offload');
    const r = await runTrain(flags(off, ['--offload_frozen']));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /frozen models offloaded to host memory/);
    assertSameUNet(join(dir, 'plain'), off, 'resident and offloaded frozen models');
  });
});

describe('checkpoint saves', () => {
  test('--sync_checkpoint_saves writes the same checkpoint files as the default background saves', async () => {
    const out = join(dir, 'sync-saves');
    const r = await runTrain(flags(out, ['--sync_checkpoint_saves']));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /saved .*checkpoint-2 \(\d+\.\d s\)/);
    assert.match(plainLog, /saved .*checkpoint-2 \(training waited \d+\.\d+ s for the copy; written in \d+\.\d s\)/);
    for (const f of ['unet/diffusion_pytorch_model.safetensors', 'unet/config.json', 'optimizer.safetensors', 'optimizer.json']) {
      assert.ok(readFileSync(join(out, 'checkpoint-4', f)).equals(readFileSync(join(dir, 'plain', 'checkpoint-4', f))), `${f} differs`);
    }
  });
});

describe('resume', () => {
  test('a changed batch size or accumulation is refused, naming the setting', async () => {
    const saved = JSON.parse(readFileSync(join(dir, 'plain', 'checkpoint-2', 'trainer_state.json'), 'utf8')) as { generators: { device: string }[]; run: Record<string, unknown> };
    assert.deepEqual(saved.generators.map((g) => g.device), ['cpu'], 'every generator of this machine (CPU only here)');
    assert.equal(saved.run.train_batch_size, 2);
    const out = join(dir, 'changed');
    cpSync(join(dir, 'plain', 'checkpoint-2'), join(out, 'checkpoint-2'), { recursive: true });
    const r = await runTrain(flags(out, ['--train_batch_size', '4']));
    assert.equal(r.code, 1);
    assert.match(r.err, /cannot resume from .*checkpoint-2: the run's settings changed \(train_batch_size: 2 -> 4\)/);
    const r2 = await runTrain(flags(out, ['--gradient_accumulation_steps', '1', '--seed', '5']));
    assert.equal(r2.code, 1);
    assert.match(r2.err, /gradient_accumulation_steps: 2 -> 1; seed: 4 -> 5/);
    assert.ok(!existsSync(join(out, 'checkpoint-4')), 'nothing was trained');
  });

  test('a truncated trainer_state.json is refused naming the file', async () => {
    const out = join(dir, 'truncated-state');
    cpSync(join(dir, 'plain', 'checkpoint-2'), join(out, 'checkpoint-2'), { recursive: true });
    const file = join(out, 'checkpoint-2', 'trainer_state.json');
    writeFileSync(file, readFileSync(file, 'utf8').slice(0, 40));
    const r = await runTrain(flags(out));
    assert.equal(r.code, 1);
    assert.ok(r.err.includes(`${file}: cannot read the trainer state (`), r.err);
    assert.equal(r.err.trim().split('\n').filter((l) => l.startsWith('diffusion-dpo')).length, 1, 'one line, no stack');
  });

  test('a run started without --seed resumes with its own seed, bit-identically', async () => {
    const noSeed = (out: string) => flags(out).filter((a, i, all) => a !== '--seed' && all[i - 1] !== '--seed');
    const full = join(dir, 'noseed-full');
    const a = await runTrain(noSeed(full));
    assert.equal(a.code, 0, a.err);
    const resumed = join(dir, 'noseed-resumed');
    cpSync(join(full, 'checkpoint-2'), join(resumed, 'checkpoint-2'), { recursive: true });
    const b = await runTrain(noSeed(resumed));
    assert.equal(b.code, 0, b.err);
    assert.match(b.err, /resumed from .*checkpoint-2 at step 2/);
    assertSameUNet(full, resumed, 'an unseeded run and its resumption');
  });

  test('--hard_skip_resume starts the interrupted epoch over, so the next batches differ', async () => {
    const out = join(dir, 'hardskip');
    cpSync(join(dir, 'plain', 'checkpoint-2'), join(out, 'checkpoint-2'), { recursive: true });
    const r = await runTrain(flags(out, ['--hard_skip_resume']));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /--hard_skip_resume: the epoch's data starts over/);
    const resumedLosses = metricsRows(out).slice(-2).map((x) => x.train_loss);
    const plainLosses = metricsRows(join(dir, 'plain')).slice(-2).map((x) => x.train_loss);
    assert.notDeepEqual(resumedLosses, plainLosses);
  });
});

describe('logs and data options', () => {
  test('--tracker_project_name names the log folder, as accelerate\'s TensorBoard tracker does', async () => {
    const out = join(dir, 'project');
    const r = await runTrain(flags(out, ['--tracker_project_name', 'sweep-7', '--max_train_steps', '1']));
    assert.equal(r.code, 0, r.err);
    assert.equal(metricsRows(out, 'sweep-7').length, 1);
    assert.ok(!existsSync(join(out, 'logs', 'tuning')));
  });

  test('an epoch that does not divide into updates ends with a partial update (accelerate\'s end of dataloader)', async () => {
    const out = join(dir, 'partial');
    // 16 pairs / batch 2 = 8 batches per epoch; accumulation 3 -> updates of 3, 3, 2 batches
    const r = await runTrain(flags(out, ['--gradient_accumulation_steps', '3', '--max_train_steps', '6', '--checkpointing_steps', '100']));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /plan: 6 updates .*\(2 epoch\(s\) of 3\)/);
    assert.deepEqual(metricsRows(out).map((x) => x.pairs_per_s > 0), Array(6).fill(true));
  });

  test('SFT on an image folder (metadata.jsonl) with --image_column and --caption_column', async () => {
    const folder = join(dir, 'imagefolder');
    mkdirSync(folder, { recursive: true });
    const lines: string[] = [];
    for (let i = 0; i < 4; i++) {
      await sharp({ create: { width: 20, height: 20, channels: 3, background: { r: 40 * i, g: 90, b: 200 - 40 * i } } }).png().toFile(join(folder, `${i}.png`));
      lines.push(JSON.stringify({ file_name: `${i}.png`, text: `a swatch number ${i}` }));
    }
    writeFileSync(join(folder, 'metadata.jsonl'), `${lines.join('\n')}\n`);
    const sft = (out: string, extra: string[]) => ['--pretrained_model_name_or_path', model, '--train_data_dir', folder, '--sft', '--output_dir', out,
      '--resolution', '16', '--train_batch_size', '2', '--max_train_steps', '2', '--learning_rate', '1e-4', '--lr_warmup_steps', '0',
      '--mixed_precision', 'no', '--seed', '1', '--checkpointing_steps', '100', ...extra];
    const ok = await runTrain(sft(join(dir, 'sft'), ['--caption_column', 'text']));
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.err, /metadata\.jsonl: 4 single images/);
    const badCaption = await runTrain(sft(join(dir, 'sft-bad'), []));
    assert.equal(badCaption.code, 1);
    assert.match(badCaption.err, /no row has the caption column 'caption'/);
    const badImage = await runTrain(sft(join(dir, 'sft-bad2'), ['--caption_column', 'text', '--image_column', 'photo']));
    assert.equal(badImage.code, 1);
    assert.match(badImage.err, /no row has image_0 .* or the image column 'photo'/);
    const dpo = await runTrain(sft(join(dir, 'sft-dpo'), ['--caption_column', 'text']).filter((a) => a !== '--sft'));
    assert.equal(dpo.code, 1);
    assert.match(dpo.err, /single images, not preference pairs; DPO needs pairs/);
  });
});

describe('validation before work', () => {
  test('a resolution the models cannot use, or a --unet_init that does not fit, is refused before any output exists', async () => {
    const out = join(dir, 'res7');
    const r = await runTrain(flags(out, ['--resolution', '7']));
    assert.equal(r.code, 1);
    assert.match(r.err, /--resolution 7: .* needs a positive multiple of 4 \(the VAE downsamples by 2, the UNet by 2 more\); the nearest are 4 and 8/);
    assert.ok(!existsSync(out), 'no output folder');
    const { fixturesDir } = await import('./helpers/fixtures.js');
    const misfit = join(dir, 'misfit');
    const m = await runTrain(flags(misfit, ['--unet_init', join(fixturesDir, 'tiny-sdxl')]));
    assert.equal(m.code, 1);
    assert.match(m.err, /tiny-sdxl\/unet does not fit .*: it is an SDXL UNet and the pipeline is SD 1\.x\/2\.x/);
    assert.ok(!existsSync(misfit));
  });
});

describe('bad data', () => {
  test('a damaged row group is skipped and counted, its rows listed; too many bad rows stop the run with a checkpoint', async () => {
    const { makeRows, writeShard } = await import('./helpers/pickapic.js');
    const { parquetMetadata } = await import('hyparquet');
    const folder = join(dir, 'damaged');
    mkdirSync(folder, { recursive: true });
    const shard = join(folder, 'train-00000.parquet');
    writeShard(shard, await makeRows(24), { rowGroupSize: 8 });
    // overwrite the start of row group 1's jpg_0 column chunk (its page header); the footer stays intact
    const bytes = readFileSync(shard);
    const meta = parquetMetadata(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    const chunk = meta.row_groups[1]!.columns.find((c) => c.meta_data!.path_in_schema[0] === 'jpg_0')!.meta_data!;
    bytes.fill(0xff, Number(chunk.data_page_offset), Number(chunk.data_page_offset) + 24);
    writeFileSync(shard, bytes);
    const args = (out: string, extra: string[]) => flags(out, ['--dataset_name', folder, '--max_train_steps', '8', '--gradient_accumulation_steps', '1', '--checkpointing_steps', '100', ...extra]);
    const tolerant = join(dir, 'damaged-ok');
    const ok = await runTrain(args(tolerant, ['--max_bad_fraction', '0.5']));
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.err, /unusable rows: 8 \(unreadable_row 8\), listed in .*bad_rows\.jsonl/);
    const listed = readFileSync(join(tolerant, 'bad_rows.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { row: number; reason: string; detail: string });
    assert.deepEqual(listed.map((b) => b.row).sort((a, b) => a - b), [8, 9, 10, 11, 12, 13, 14, 15]);
    assert.ok(listed.every((b) => b.reason === 'unreadable_row' && b.detail.includes('train-00000.parquet')));
    assert.ok(metricsRows(tolerant).at(-1)!.bad_rows === 8);
    assert.match(readFileSync(join(tolerant, 'report.html'), 'utf8'), /unreadable_row<\/th><td>8/);
    // the default limit (5 %) stops the run once the epoch shows a third of the rows bad, saving the state first
    const strict = join(dir, 'damaged-stop');
    const stop = await runTrain(args(strict, []));
    assert.equal(stop.code, 1, stop.err);
    assert.match(stop.err, /training stopped at step \d+: 8 of 24 rows read were unusable \(unreadable_row 8\), more than --max_bad_fraction 0\.05.*The state is saved in .*checkpoint-\d+/);
    // and the ids can be excluded: the same run with --exclude_rows bad_rows.jsonl has no bad row
    const clean = join(dir, 'damaged-excluded');
    const ex = await runTrain(args(clean, ['--exclude_rows', join(tolerant, 'bad_rows.jsonl')]));
    assert.equal(ex.code, 0, ex.err);
    assert.match(ex.err, /8 excluded \(--exclude_rows\)/);
    assert.ok(!/unusable rows/.test(ex.err));
  });

  test('a dataset where every row is unusable stops with an error, never exit 0 after 0 steps', async () => {
    const { makeRows, writeShard } = await import('./helpers/pickapic.js');
    const folder = join(dir, 'allbad');
    mkdirSync(folder, { recursive: true });
    const rows = (await makeRows(6)).map((r) => ({ ...r, jpg0: new Uint8Array([1, 2, 3]) }));
    writeShard(join(folder, 'train-00000.parquet'), rows);
    const r = await runTrain(flags(join(dir, 'allbad-out'), ['--dataset_name', folder, '--max_bad_fraction', '1']));
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /yielded no batch of 2: every row read was bad/);
  });
});
