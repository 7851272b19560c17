// The trainer end to end on a generated tiny pipeline: the reference launch scripts' flags parse,
// a short run writes checkpoints, logs TensorBoard reads and the final pipeline, trains only the
// UNet, and a run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { parseTrainArgs } from '../src/train/args.js';
import { resolveTrainConfig } from '../src/train/config.js';
import { writeTinyPipeline, writeWarmPreferenceSet } from './helpers/tiny_pipeline.js';
import { readEvents, EventWriter } from '../src/train/tensorboard.js';
import { loadPipeline, disposePipeline } from '../src/models/index.js';
import { bin, runTrain } from './helpers/train_cli.js';

const dir = mkdtempSync(join(tmpdir(), 'dpo-train-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const model = join(dir, 'model');
let data = '';

before(async () => {
  writeTinyPipeline(model, 1);
  data = await writeWarmPreferenceSet(join(dir, 'data'), 24, 16, 1);
});

function flags(out: string, extra: string[] = []): string[] {
  return ['--pretrained_model_name_or_path', model, '--dataset_name', data, '--output_dir', out, '--resolution', '16',
    '--train_batch_size', '2', '--gradient_accumulation_steps', '2', '--max_train_steps', '8', '--learning_rate', '1e-3',
    '--lr_scheduler', 'constant', '--lr_warmup_steps', '0', '--checkpointing_steps', '4', '--mixed_precision', 'no',
    '--seed', '3', '--proportion_empty_prompts', '0.2', ...extra];
}

const run = runTrain;

describe('train.py flags', () => {
  const launcher = (file: string) => {
    // the reference launch scripts, with `accelerate launch train.py` swapped for our command
    const sh: Record<string, string> = {
      sd15: '--pretrained_model_name_or_path=runwayml/stable-diffusion-v1-5 --dataset_name=yuvalkirstain/pickapic_v2 --train_batch_size=1 --dataloader_num_workers=16 --gradient_accumulation_steps=128 --max_train_steps=2000 --lr_scheduler=constant_with_warmup --lr_warmup_steps=500 --learning_rate=1e-8 --scale_lr --cache_dir=/export/share/datasets/vision_language/pick_a_pic_v2/ --checkpointing_steps 500 --beta_dpo 5000 --output_dir=tmp-sd15',
      sdxl: '--pretrained_model_name_or_path=stabilityai/stable-diffusion-xl-base-1.0 --pretrained_vae_model_name_or_path=madebyollin/sdxl-vae-fp16-fix --dataset_name=yuvalkirstain/pickapic_v2 --train_batch_size=1 --dataloader_num_workers=16 --gradient_accumulation_steps=128 --max_train_steps=2000 --lr_scheduler=constant_with_warmup --lr_warmup_steps=200 --learning_rate=1e-8 --scale_lr --cache_dir=/export/share/datasets/vision_language/pick_a_pic_v2/ --checkpointing_steps 200 --beta_dpo 5000 --sdxl --output_dir=tmp-sdxl',
      turbo: '--pretrained_model_name_or_path=stabilityai/sdxl-turbo --pretrained_vae_model_name_or_path=madebyollin/sdxl-vae-fp16-fix --dataset_name=yuvalkirstain/pickapic_v2 --train_batch_size=1 --dataloader_num_workers=16 --gradient_accumulation_steps=128 --max_train_steps=2000 --lr_scheduler=constant_with_warmup --lr_warmup_steps=200 --learning_rate=1e-8 --scale_lr --cache_dir=/export/share/datasets/vision_language/pick_a_pic_v2/ --checkpointing_steps 200 --beta_dpo 5000 --sdxl --resolution 512 --proportion_empty_prompts 0 --output_dir=turbo-trial-beta5k-lr1e-8-warmup200',
    };
    return sh[file]!.split(' ');
  };
  test('the sd15, sdxl and turbo launch scripts parse and resolve with their values', () => {
    // one GPU, as the scripts' users have: fp16 mixed precision stays on
    const gpu = { env: {}, cudaDevices: 1 };
    const sd = resolveTrainConfig(parseTrainArgs(launcher('sd15')), gpu);
    assert.equal(sd.batch.accumulation, 128);
    assert.equal(sd.schedule.learningRate, 1e-8 * 128, '--scale_lr: lr x accumulation x batch x processes');
    assert.equal(sd.data.resolution, 512);
    assert.equal(sd.precision.mixed, 'fp16');
    assert.equal(sd.device, 'cuda:0');
    assert.equal(sd.data.proportionEmptyPrompts, 0.2);
    assert.equal(sd.optimizer.kind, 'adamw');
    assert.equal(sd.memory.gradientCheckpointing, false);
    const xl = resolveTrainConfig(parseTrainArgs(launcher('sdxl')), gpu);
    assert.equal(xl.model.sdxl, true);
    assert.equal(xl.data.resolution, 1024);
    assert.equal(xl.schedule.warmupSteps, 200);
    assert.equal(xl.optimizer.kind, 'adafactor', '--sdxl forces Adafactor');
    assert.equal(xl.clipGradNorm, 1, '... and still clips');
    assert.equal(xl.memory.gradientCheckpointing, true, '--sdxl forces gradient checkpointing');
    const turbo = resolveTrainConfig(parseTrainArgs(launcher('turbo')), gpu);
    assert.equal(turbo.data.resolution, 512);
    assert.equal(turbo.data.proportionEmptyPrompts, 0);
    assert.equal(turbo.model.timestepMode, 'turbo', 'guessed from the model name, as train.py');
  });
  test('dashes and underscores, unknown and unsupported flags', () => {
    const a = parseTrainArgs(['--pretrained-model-name-or-path', 'm', '--dataset-name', 'd', '--beta-dpo', '100', '--sft']);
    assert.equal(a.beta_dpo, 100);
    assert.equal(a.sft, true);
    assert.throws(() => parseTrainArgs(['--pretrained_model_name_or_path', 'm', '--dataset_name', 'd', '--bogus', '1']), /unknown flag '--bogus'/);
    assert.throws(() => parseTrainArgs(['--pretrained_model_name_or_path', 'm', '--dataset_name', 'd', '--dataset_config_name', 'x']), /dataset configs are not supported/);
    assert.throws(() => parseTrainArgs(['--pretrained_model_name_or_path', 'm', '--dataset_name', 'd', '--mixed_precision', 'fp8']), /must be one of no, fp16, bf16/);
    assert.throws(() => parseTrainArgs(['--dataset_name', 'd']), /--pretrained_model_name_or_path is required/);
  });
});

describe('TensorBoard event files', () => {
  test('scalars written with CRC-checked records read back with their tags and steps', () => {
    const w = new EventWriter(join(dir, 'tb'));
    w.scalars(1, { train_loss: 0.69, lr: 1e-4 });
    w.scalars(2, { train_loss: 0.5, lr: 1e-4 });
    const events = readEvents(readFileSync(w.path));
    assert.equal(events[0]!.fileVersion, 'brain.Event:2');
    assert.deepEqual(events.slice(1).map((e) => e.step), [1, 2]);
    assert.ok(Math.abs(events[2]!.scalars.train_loss! - 0.5) < 1e-7);
  });
});

describe('training runs', () => {
  test('a short DPO run: checkpoints, logs, report, final pipeline; only the UNet changes', async () => {
    const out = join(dir, 'run');
    const r = await run(flags(out));
    assert.equal(r.code, 0, r.err);
    for (const f of ['checkpoint-4', 'checkpoint-8', 'report.html', 'model_index.json', join('unet', 'diffusion_pytorch_model.safetensors'), join('logs', 'tuning', 'metrics.jsonl')]) {
      assert.ok(existsSync(join(out, f)), f);
    }
    const rows = readFileSync(join(out, 'logs', 'tuning', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    assert.equal(rows.length, 8);
    assert.ok(Math.abs(rows[0]!.train_loss! - Math.LN2) < 1e-4, 'the first update starts at log 2 (model = reference)');
    const tb = readdirSync(join(out, 'logs', 'tuning')).find((f) => f.startsWith('events.out.tfevents'))!;
    const events = readEvents(readFileSync(join(out, 'logs', 'tuning', tb)));
    const tags = Object.keys(events[1]!.scalars);
    for (const t of ['implicit_acc_accumulated', 'lr', 'model_mse_unaccumulated', 'ref_mse_unaccumulated', 'train_loss']) assert.ok(tags.includes(t), `train.py's ${t}`);
    for (const t of ['pairs_per_s', 'host_rss_mb', 'host_peak_rss_mb']) assert.ok(tags.includes(t), `resource log ${t}`);
    assert.ok(rows.every((r) => r.pairs_per_s! > 0 && r.host_peak_rss_mb! >= r.host_rss_mb! - 1));
    assert.match(readFileSync(join(out, 'report.html'), 'utf8'), /<svg[^>]+aria-label="Loss \(train_loss\)"/);
    torch.tidy(() => {
      const before = loadPipeline(model);
      const afterRun = loadPipeline(out);
      const changed = before.unet.namedParameters().filter(([k, p]) => torch.tidy(() => afterRun.unet.stateDict().get(k)!.sub(p).abs().max().item()) > 0).length;
      assert.equal(changed, before.unet.namedParameters().length, 'every UNet parameter moved');
      for (const [a, b] of [[before.vae, afterRun.vae], [before.textEncoder!, afterRun.textEncoder!]] as const) {
        for (const [k, t] of a.stateDict()) assert.equal(torch.tidy(() => b.stateDict().get(k)!.sub(t).abs().max().item()), 0, `frozen ${k}`);
      }
      disposePipeline(before);
      disposePipeline(afterRun);
    });
  });

  test('SIGKILL after a checkpoint, then resume: bit-identical to an uninterrupted run', async () => {
    const full = join(dir, 'full');
    assert.equal((await run(flags(full))).code, 0);
    const killed = join(dir, 'killed');
    const p = spawn(process.execPath, [bin, 'train', ...flags(killed)], { env: { ...process.env, DPO_NUM_THREADS: '1' }, stdio: 'ignore' });
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (existsSync(join(killed, 'checkpoint-4'))) {
          clearInterval(poll);
          p.kill('SIGKILL');
          resolve();
        }
      }, 20);
    });
    await new Promise((r) => p.on('close', r));
    assert.ok(!existsSync(join(killed, 'checkpoint-8')), 'killed before the end');
    const resumed = await run(flags(killed));
    assert.equal(resumed.code, 0, resumed.err);
    assert.match(resumed.err, /resumed from .*checkpoint-4 at step 4/);
    torch.tidy(() => {
      const a = torch.loadSafetensors(join(full, 'unet', 'diffusion_pytorch_model.safetensors'));
      const b = torch.loadSafetensors(join(killed, 'unet', 'diffusion_pytorch_model.safetensors'));
      for (const [k, t] of a) assert.equal(b.get(k)!.sub(t).abs().max().item(), 0, k);
    });
    const la = readFileSync(join(full, 'logs', 'tuning', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { train_loss: number }).train_loss);
    const lb = readFileSync(join(killed, 'logs', 'tuning', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { train_loss: number }).train_loss);
    assert.deepEqual(lb.slice(-4), la.slice(-4), 'the resumed updates log the same losses');
  });
});

describe('SDXL', () => {
  test('two DPO updates on the tiny SDXL pipeline: both text encoders, time ids, Adafactor, gradient checkpointing', async () => {
    const { fixturesDir } = await import('./helpers/fixtures.js');
    const out = join(dir, 'sdxl');
    const sdxlData = await writeWarmPreferenceSet(join(dir, 'sdxl-data'), 4, 32, 2);
    const r = await run(['--pretrained_model_name_or_path', join(fixturesDir, 'tiny-sdxl'), '--dataset_name', sdxlData, '--sdxl',
      '--output_dir', out, '--resolution', '32', '--train_batch_size', '2', '--max_train_steps', '2', '--learning_rate', '1e-3',
      '--lr_scheduler', 'constant', '--lr_warmup_steps', '0', '--checkpointing_steps', '2', '--mixed_precision', 'no', '--seed', '1']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /--sdxl: gradient checkpointing on, as train\.py/);
    assert.match(r.err, /gradient checkpointing on/);
    const opt = JSON.parse(readFileSync(join(out, 'checkpoint-2', 'optimizer.json'), 'utf8')) as { optimizer: string };
    assert.equal(opt.optimizer, 'Adafactor', '--sdxl forces Adafactor, as train.py');
    assert.ok(existsSync(join(out, 'text_encoder_2', 'model.safetensors')));
  });
});

describe('robustness and options', () => {
  test('a non-finite loss stops the run with the last good state saved', async () => {
    const out = join(dir, 'nan');
    const r = await run(flags(out, ['--learning_rate', '1e30', '--max_train_steps', '6', '--gradient_accumulation_steps', '1']));
    assert.equal(r.code, 1);
    assert.match(r.err, /loss is (NaN|Infinity|-Infinity) at step (\d+) \(micro-step \d+\): training stopped; the last good state is saved in .*checkpoint-\d+/);
    const step = Number(r.err.match(/at step (\d+)/)![1]);
    assert.ok(existsSync(join(out, `checkpoint-${step - 1}`)));
  });

  test('after a non-finite loss, non-finite weights are not saved as the last good state', async () => {
    const { saveLastGoodState } = await import('../src/train/recipe.js');
    const out = join(dir, 'overflow');
    const lines: string[] = [];
    const events = { info: (m: string) => lines.push(m), update: () => undefined };
    const w = torch.tensor([1, Number.POSITIVE_INFINITY]);
    // the parts of the state the decision reads: the trained weights, the optimizer state, the step, the output folder
    const state = {
      trained: { namedTensors: () => [['conv_in.weight', w]] }, optimizer: { stateDict: () => ({ tensors: new Map() }) },
      config: { output: { dir: out } }, progress: { globalStep: 3 }, saves: { pending: null, failed: null },
    } as unknown as Parameters<typeof saveLastGoodState>[0];
    assert.match(await saveLastGoodState(state, events), /the weights or optimizer state hold NaN or infinite values \(conv_in\.weight\), so no checkpoint was saved/);
    w.dispose();
    assert.ok(!existsSync(out), 'nothing written');
    assert.throws(() => parseTrainArgs(['--pretrained_model_name_or_path', 'm', '--dataset_name', 'd', '--learning_rate', '1e39']), /within the float32 range/);
  });

  test('a checkpoint with NaN weights or optimizer state is refused at resume, naming the file', async () => {
    const src = join(dir, 'run', 'checkpoint-4'); // written by the first test of 'training runs'
    for (const [file, key] of [[join('unet', 'diffusion_pytorch_model.safetensors'), 'conv_in.weight'], ['optimizer.safetensors', '0.exp_avg']] as const) {
      const out = join(dir, `poisoned-${key}`);
      cpSync(src, join(out, 'checkpoint-4'), { recursive: true });
      const path = join(out, 'checkpoint-4', file);
      torch.tidy(() => {
        const tensors = torch.loadSafetensors(path);
        const poisoned = new Map([...tensors].map(([k, t]) => [k, k === key ? t.clone().fill_(Number.NaN) : t.clone()]));
        torch.saveSafetensors(path, poisoned);
      });
      const r = await run(flags(out));
      assert.equal(r.code, 1, r.err);
      assert.ok(r.err.includes(`${path}: NaN or infinite values in`), r.err);
      assert.match(r.err, new RegExp(`${key.replace('.', '\\.')}.*cannot be resumed`));
    }
  });

  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    test(`${signal} saves a checkpoint at the end of the update and exits with ${code}${signal === 'SIGINT' ? ' (also when delivered twice at once)' : ''}`, async () => {
      const out = join(dir, signal);
      const p = spawn(process.execPath, [bin, 'train', ...flags(out, ['--max_train_steps', '1000', '--checkpointing_steps', '1000'])], { env: { ...process.env, DPO_NUM_THREADS: '1' } });
      let err = '';
      p.stderr.on('data', (d: Buffer) => {
        err += d;
        if (/step 10\//.test(err) && !p.killed) {
          p.kill(signal);
          // SIGINT twice at once, as a terminal's Ctrl-C reaches `launch` and its processes and launch passes it on: one stop
          if (signal === 'SIGINT') p.kill(signal);
        }
      });
      const exit = await new Promise<number | null>((r) => p.on('close', r));
      assert.equal(exit, code, err);
      assert.match(err, new RegExp(`${signal}: saving a checkpoint at the end of this update`));
      const saved = readdirSync(out).filter((d) => d.startsWith('checkpoint-'));
      assert.equal(saved.length, 1, err);
      assert.ok(Number(saved[0]!.split('-')[1]) >= 10);
    });
  }

  test('a second signal exits at once', async () => {
    const out = join(dir, 'twice');
    // long updates (a whole epoch of 12 micro-steps each), so that the second signal lands inside one
    const p = spawn(process.execPath, [bin, 'train', ...flags(out, ['--max_train_steps', '1000', '--checkpointing_steps', '1000', '--gradient_accumulation_steps', '12'])],
      { env: { ...process.env, DPO_NUM_THREADS: '1' } });
    let err = '';
    let sent = 0;
    p.stderr.on('data', (d: Buffer) => {
      err += d;
      if (sent === 0 && /step 10\//.test(err)) {
        sent = 1;
        p.kill('SIGTERM');
      } else if (sent === 1 && /SIGTERM: saving a checkpoint/.test(err)) {
        sent = 2;
        p.kill('SIGINT');
      }
    });
    const exit = await new Promise<number | null>((r) => p.on('close', r));
    assert.equal(exit, 130, err);
    assert.match(err, /SIGINT again: exiting at once/);
    assert.ok(!existsSync(out) || readdirSync(out).every((d) => !d.startsWith('checkpoint-')), 'no checkpoint: the update was cut short');
  });

  test('a --config file supplies flags; bf16 autocast runs on the CPU', async () => {
    const { writeFileSync } = await import('node:fs');
    const out = join(dir, 'config');
    const cfg = join(dir, 'flags.json');
    writeFileSync(cfg, JSON.stringify({ pretrained_model_name_or_path: model, dataset_name: data, 'max-train-steps': 2, mixed_precision: 'bf16' }));
    const r = await run(['--config', cfg, '--output_dir', out, '--resolution', '16', '--train_batch_size', '2', '--checkpointing_steps', '2', '--seed', '1']);
    assert.equal(r.code, 0, r.err);
    assert.equal((JSON.parse(r.out) as { steps: number }).steps, 2);
  });
});
