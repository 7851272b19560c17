// The recipe's memory options and resume rules, end to end on a generated tiny pipeline:
// gradient checkpointing and frozen-model offload leave the trained weights bit-identical; a
// resume with changed batch settings is refused by name; a run started without --seed resumes
// with its own seed; --hard_skip_resume, --tracker_project_name and single-image SFT data do what
// they say; epochs that do not divide into updates end with a partial update, as accelerate's.
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { writeTinyPipeline, writeWarmPreferenceSet } from '../src/train/demo_assets.js';
import { assertSameUNet, metricsRows, runTrain } from './helpers/train_cli.js';

const dir = mkdtempSync(join(tmpdir(), 'dpo-recipe-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const model = join(dir, 'model');
let data = '';

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
