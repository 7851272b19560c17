// --preset: each recipe is exactly the flags it says it sets (the configs agree), every value it
// holds is one the flag parser accepts, the effective batch is reached through accumulation for
// the processes at hand, and explicit flags win.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FLAGS, parseTrainArgs } from '../src/train/args.js';
import { resolveTrainConfig, type ConfigEnvironment, type TrainConfig } from '../src/train/config.js';
import { PRESETS, PRESET_NAMES } from '../src/train/presets.js';

const BASE = ['--pretrained_model_name_or_path', 'org/model', '--dataset_name', 'org/data', '--seed', '1'];
const GPU: ConfigEnvironment = { env: {}, cudaDevices: 1 };
const processes = (n: number): ConfigEnvironment => ({
  env: { WORLD_SIZE: String(n), RANK: '0', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: String(n), MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29500' }, cudaDevices: n,
});
const resolve = (args: string[], host = GPU) => resolveTrainConfig(parseTrainArgs([...BASE, ...args]), host);
/** A config without its notes (which say how it was reached). */
const settings = (c: TrainConfig) => ({ ...c, notes: [] });

describe('presets', () => {
  for (const name of PRESET_NAMES) {
    test(`${name}: the same config as the flags it prints; every value is a flag the parser accepts`, () => {
      for (const flag of Object.keys(PRESETS[name as keyof typeof PRESETS].values)) assert.ok(flag in FLAGS, `${flag} is a flag`);
      const viaPreset = resolve(['--preset', name]);
      const line = viaPreset.notes.find((n) => n.startsWith(`preset ${name} (`))!;
      assert.ok(line, viaPreset.notes.join('\n'));
      const printed = line.slice(line.indexOf(': set ') + ': set '.length).split(' ').filter(Boolean);
      assert.deepEqual(settings(viaPreset), settings(resolve(printed)), 'the printed flags give the preset\'s config');
    });
  }

  test('sd15-paper reaches the paper\'s 2048 pairs through accumulation: 2048 on one process, 128 on 16 (the launch script\'s), the nearest on 3, said', () => {
    const one = resolve(['--preset', 'sd15-paper']);
    assert.deepEqual([one.batch.perDevice, one.batch.accumulation], [1, 2048]);
    // --scale_lr: 1e-8 per pair of the effective batch
    assert.ok(Math.abs(one.schedule.learningRate - 2048e-8) < 1e-15);
    assert.equal(one.objective.betaDpo, 5000);
    const sixteen = resolve(['--preset', 'sd15-paper'], processes(16));
    assert.equal(sixteen.batch.accumulation, 128);
    assert.match(sixteen.notes.join('\n'), /effective batch 1 x 128 x 16 process\(es\) = 2048 \(the recipe's\)/);
    const three = resolve(['--preset', 'sd15-paper'], processes(3));
    assert.equal(three.batch.accumulation, 683);
    assert.match(three.notes.join('\n'), /= 2049 \(the recipe's is 2048\)/);
  });

  test('explicit flags win, and are named as kept; the per-device batch given changes the accumulation', () => {
    const c = resolve(['--preset', 'sd15-lora', '--learning_rate', '2e-5', '--train_batch_size', '4']);
    assert.ok(Math.abs(c.schedule.learningRate - 2e-5) < 1e-12);
    assert.deepEqual([c.batch.perDevice, c.batch.accumulation], [4, 8]);
    assert.equal(c.lora?.rank, 8);
    assert.match(c.notes.join('\n'), /your --learning_rate 0\.00002 --train_batch_size 4 kept/);
    assert.match(c.notes.join('\n'), /differs from the recipe in: AdamW in float32/);
  });

  test('a preset\'s β wins over an objective\'s own default (KTO\'s 1000), as the printout says', () => {
    const c = resolve(['--preset', 'sd15-lora', '--loss_type', 'kto']);
    assert.equal(c.objective.betaDpo, 2500);
    assert.doesNotMatch(c.notes.join('\n'), /Diffusion-KTO's default/);
    assert.equal(resolve(['--loss_type', 'kto']).objective.betaDpo, 1000);
  });

  test('on a CPU the recipe\'s fp16 becomes float32 as the default does (said), not an error', () => {
    const c = resolve(['--preset', 'sd15-mapo'], { env: {}, cudaDevices: 0 });
    assert.equal(c.precision.mixed, 'no');
    assert.equal(c.objective.lossType, 'mapo');
    assert.throws(() => resolve(['--preset', 'nope']), /--preset.*sd15-paper/);
  });
});
