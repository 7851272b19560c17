// The training config: every flag of the table either changes the resolved config (which is all
// the recipe reads) or is refused with a message; and the decisions the config settles before
// any work (device, precision, timestep mode, run length, what --sdxl forces).
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FLAGS, parseTrainArgs, type FlagName } from '../src/train/args.js';
import { resolveTrainConfig, type ConfigEnvironment, type TrainConfig } from '../src/train/config.js';

const dir = mkdtempSync(join(tmpdir(), 'dpo-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
// --choice_labels names a file that must exist before any work
const labelsFile = join(dir, 'labels.jsonl');
writeFileSync(labelsFile, '');

const BASE = ['--pretrained_model_name_or_path', 'org/model', '--dataset_name', 'org/data', '--train_batch_size', '2', '--seed', '1'];
const CPU: ConfigEnvironment = { env: {}, cudaDevices: 0 };
const TWO_GPUS: ConfigEnvironment = { env: {}, cudaDevices: 2 };

function resolve(extra: string[], host: ConfigEnvironment = CPU): TrainConfig {
  return resolveTrainConfig(parseTrainArgs([...BASE, ...extra]), host);
}

/** A value other than the default for each flag, and the machine it is tried on (a CPU unless it matters). */
const TRIES: Record<FlagName, { args: string[]; host?: ConfigEnvironment }> = {
  pretrained_model_name_or_path: { args: ['--pretrained_model_name_or_path', 'org/other'] },
  revision: { args: ['--revision', 'v2'] },
  pretrained_vae_model_name_or_path: { args: ['--pretrained_vae_model_name_or_path', 'madebyollin/sdxl-vae-fp16-fix'] },
  unet_init: { args: ['--unet_init', 'org/unet'] },
  dataset_name: { args: ['--dataset_name', 'org/other-data'] },
  dataset_config_name: { args: ['--dataset_config_name', 'cfg'] },
  train_data_dir: { args: ['--train_data_dir', 'folder'] }, // --dataset_name wins, as train.py: tried without it below
  image_column: { args: ['--image_column', 'picture', '--sft'] },
  caption_column: { args: ['--caption_column', 'text'] },
  split: { args: ['--split', 'validation'] },
  max_train_samples: { args: ['--max_train_samples', '10'] },
  dreamlike_pairs_only: { args: ['--dreamlike_pairs_only'] },
  cache_dir: { args: ['--cache_dir', '/cache'] },
  output_dir: { args: ['--output_dir', 'out'] },
  logging_dir: { args: ['--logging_dir', 'tb'] },
  report_to: { args: ['--report_to', 'none'] },
  tracker_project_name: { args: ['--tracker_project_name', 'sweep-3'] },
  seed: { args: ['--seed', '7'] },
  resolution: { args: ['--resolution', '256'] },
  random_crop: { args: ['--random_crop'] },
  no_hflip: { args: ['--no_hflip'] },
  train_batch_size: { args: ['--train_batch_size', '4'] },
  num_train_epochs: { args: ['--num_train_epochs', '3'] },
  max_train_steps: { args: ['--max_train_steps', '10'] },
  gradient_accumulation_steps: { args: ['--gradient_accumulation_steps', '4'] },
  gradient_checkpointing: { args: ['--gradient_checkpointing'] },
  dataloader_num_workers: { args: ['--dataloader_num_workers', '2'] },
  learning_rate: { args: ['--learning_rate', '1e-6'] },
  scale_lr: { args: ['--scale_lr'] },
  lr_scheduler: { args: ['--lr_scheduler', 'cosine'] },
  lr_warmup_steps: { args: ['--lr_warmup_steps', '10'] },
  use_adafactor: { args: ['--use_adafactor'] },
  allow_tf32: { args: ['--allow_tf32'] },
  adam_beta1: { args: ['--adam_beta1', '0.8'] },
  adam_beta2: { args: ['--adam_beta2', '0.99'] },
  adam_weight_decay: { args: ['--adam_weight_decay', '0'] },
  adam_epsilon: { args: ['--adam_epsilon', '1e-6'] },
  max_grad_norm: { args: ['--max_grad_norm', '0.5'] },
  hub_model_id: { args: ['--hub_model_id', 'me/model'] },
  mixed_precision: { args: ['--mixed_precision', 'bf16'] },
  local_rank: { args: ['--local_rank', '1'], host: TWO_GPUS },
  checkpointing_steps: { args: ['--checkpointing_steps', '50'] },
  checkpoints_total_limit: { args: ['--checkpoints_total_limit', '2'] },
  resume_from_checkpoint: { args: ['--resume_from_checkpoint', 'none'] },
  hard_skip_resume: { args: ['--hard_skip_resume'] },
  sync_checkpoint_saves: { args: ['--sync_checkpoint_saves'] },
  noise_offset: { args: ['--noise_offset', '0.1'] },
  input_perturbation: { args: ['--input_perturbation', '0.1'] },
  proportion_empty_prompts: { args: ['--proportion_empty_prompts', '0'] },
  sdxl: { args: ['--sdxl'] },
  sft: { args: ['--sft'] },
  beta_dpo: { args: ['--beta_dpo', '2500'] },
  choice_model: { args: ['--choice_model', 'pickscore'] },
  choice_labels: { args: ['--choice_labels', labelsFile] },
  choice_model_path: { args: ['--choice_model', 'pickscore', '--choice_model_path', 'm'] },
  choice_processor: { args: ['--choice_model', 'pickscore', '--choice_processor', 'p'] },
  config: { args: [] }, // filled in below: a file that sets a flag
  timestep_mode: { args: ['--timestep_mode', 'turbo'] },
  offload_frozen: { args: ['--offload_frozen'] },
  device: { args: ['--device', 'cpu'], host: TWO_GPUS },
  max_bad_fraction: { args: ['--max_bad_fraction', '0.2'] },
  deterministic: { args: ['--deterministic'] },
  channels_last: { args: ['--channels_last'] },
  sdpa_backend: { args: ['--sdpa_backend', 'math'] },
  exclude_rows: { args: ['--exclude_rows', 'bad.txt'] },
  latent_cache: { args: ['--latent_cache', 'cache'] },
  ddp_bucket_mb: { args: ['--ddp_bucket_mb', '50'] },
  ddp_timeout: { args: ['--ddp_timeout', '60'] },
  sample_seeds: { args: ['--sample_seeds'] },
  loss_type: { args: ['--loss_type', 'hinge'] },
  beta_mapo: { args: ['--loss_type', 'mapo', '--beta_mapo', '0.2'] },
  mapo_snr_value: { args: ['--loss_type', 'mapo', '--mapo_snr_value', '0.3'] },
  lora_rank: { args: ['--lora_rank', '4'] },
  preset: { args: ['--preset', 'sd15-paper'] },
  noising: { args: ['--noising', 'ddim_inversion'] },
  inversion_steps: { args: ['--noising', 'ddim_inversion', '--inversion_steps', '4'] },
  inversion_eta: { args: ['--noising', 'ddim_inversion', '--inversion_eta', '0.1'] },
  inversion_model: { args: ['--noising', 'ddim_inversion', '--inversion_model', 'trained'] },
  kto_lambda_desirable: { args: ['--loss_type', 'kto', '--kto_lambda_desirable', '2'] },
  kto_lambda_undesirable: { args: ['--loss_type', 'kto', '--kto_lambda_undesirable', '2'] },
  lora_alpha: { args: ['--lora_rank', '4', '--lora_alpha', '8'] },
  lora_dropout: { args: ['--lora_rank', '4', '--lora_dropout', '0.1'] },
  lora_target_modules: { args: ['--lora_rank', '4', '--lora_target_modules', 'to_q,ff.net.2'] },
  lora_init: { args: ['--lora_init', 'lora.safetensors'] },
};

function diff(a: unknown, b: unknown, path = ''): string[] {
  if (typeof a !== 'object' || a === null || typeof b !== 'object' || b === null) return JSON.stringify(a) === JSON.stringify(b) ? [] : [path];
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].filter((k) => k !== 'notes').flatMap((k) => diff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], path ? `${path}.${k}` : k));
}

describe('the flag table', () => {
  test('every flag changes the config or is refused with a message', () => {
    const cfgFile = join(dir, 'flags.json');
    writeFileSync(cfgFile, JSON.stringify({ beta_dpo: 100 }));
    TRIES.config = { args: ['--config', cfgFile] };
    assert.deepEqual(Object.keys(TRIES).sort(), Object.keys(FLAGS).sort(), 'the test covers exactly the flag table');
    const outcome: Record<string, string> = {};
    for (const name of Object.keys(FLAGS) as FlagName[]) {
      const t = TRIES[name];
      const host = t.host ?? CPU;
      const base = name === 'train_data_dir' ? ['--pretrained_model_name_or_path', 'org/model', '--train_batch_size', '2', '--seed', '1', '--train_data_dir', 'a'] : BASE;
      const args = name === 'train_data_dir' ? ['--train_data_dir', 'b'] : t.args;
      const before = resolveTrainConfig(parseTrainArgs(base), host);
      let after: TrainConfig;
      try {
        after = resolveTrainConfig(parseTrainArgs([...base, ...args]), host);
      } catch (e) {
        assert.ok((e as Error).message.length > 20, `--${name} is refused with a message`);
        outcome[name] = `refused: ${(e as Error).message}`;
        continue;
      }
      const changed = diff(before, after);
      assert.ok(changed.length > 0, `--${name} ${args.slice(1).join(' ')} neither changes the config nor is refused`);
      outcome[name] = changed.join(', ');
    }
    // spot checks of what changes
    assert.match(outcome.tracker_project_name!, /output\.logDir/);
    assert.match(outcome.local_rank!, /^device$/);
    assert.match(outcome.hard_skip_resume!, /output\.hardSkipResume/);
    assert.match(outcome.sync_checkpoint_saves!, /output\.syncCheckpointSaves/);
    assert.match(outcome.latent_cache!, /data\.latentCache/);
    assert.match(outcome.image_column!, /data\.imageColumn/);
    assert.match(outcome.num_train_epochs!, /schedule\.maxTrainSteps/);
    assert.match(outcome.choice_model!, /data\.choice/);
    assert.match(outcome.hub_model_id!, /^refused/);
    assert.match(outcome.dataset_config_name!, /^refused/);
  });
});

describe('decisions settled before the loop', () => {
  test('device: auto picks cuda:<local_rank> when CUDA is there; a CUDA device asked for on a CPU machine is refused', () => {
    assert.equal(resolve([]).device, 'cpu');
    assert.equal(resolve([], TWO_GPUS).device, 'cuda:0');
    assert.equal(resolve([], { env: { LOCAL_RANK: '1' }, cudaDevices: 2 }).device, 'cuda:1', 'LOCAL_RANK wins over --local_rank, as train.py');
    assert.equal(resolve(['--device', 'cuda:1'], TWO_GPUS).device, 'cuda:1');
    assert.throws(() => resolve(['--device', 'cuda']), /CUDA is not available/);
    assert.throws(() => resolve(['--local_rank', '1']), /selects a CUDA device, but CUDA is not available/);
    assert.throws(() => resolve(['--device', 'cuda:2'], TWO_GPUS), /CUDA device 2 does not exist \(2 visible\)/);
    assert.throws(() => resolve([], { env: { WORLD_SIZE: '2' }, cudaDevices: 0 }), /RANK must be an integer/);
    // several processes: each takes its local rank's GPU, or the CPU (Gloo) when there is none
    const torchrun = (rank: number) => ({ RANK: String(rank), WORLD_SIZE: '2', LOCAL_RANK: String(rank), MASTER_ADDR: '127.0.0.1' });
    assert.equal(resolve([], { env: torchrun(1), cudaDevices: 2 }).device, 'cuda:1');
    const cpuRank = resolve([], { env: torchrun(1), cudaDevices: 0 });
    assert.deepEqual([cpuRank.device, cpuRank.batch.rank, cpuRank.batch.worldSize], ['cpu', 1, 2]);
    assert.equal(resolve([], { env: torchrun(1), cudaDevices: 1 }).device, 'cuda:0', 'one visible GPU (bound per task): that one');
    assert.throws(() => resolve([], { env: { ...torchrun(1), LOCAL_RANK: '3' }, cudaDevices: 2 }), /CUDA device 3 does not exist/);
  });

  test('mixed precision: the fp16 default becomes float32 on a CPU, with a note; fp16 asked for on a CPU is refused', () => {
    const c = resolve([]);
    assert.equal(c.precision.mixed, 'no');
    assert.equal(c.precision.weightDtype, 'float32');
    assert.ok(c.notes.some((n) => /fp16 \(the default\) needs a CUDA device/.test(n)));
    assert.throws(() => resolve(['--mixed_precision', 'fp16']), /fp16 needs a CUDA device/);
    assert.equal(resolve(['--mixed_precision', 'bf16']).precision.weightDtype, 'bfloat16');
    assert.equal(resolve([], TWO_GPUS).precision.weightDtype, 'float16');
  });

  test('timestep mode: guessed from the model name as train.py does (and said), or set', () => {
    assert.equal(resolve(['--pretrained_model_name_or_path', 'stabilityai/sdxl-turbo']).model.timestepMode, 'turbo');
    assert.equal(resolve(['--pretrained_model_name_or_path', 'stabilityai/stable-diffusion-xl-refiner-1.0']).model.timestepMode, 'refiner');
    const c = resolve(['--pretrained_model_name_or_path', 'me/my-turbo-finetune', '--timestep_mode', 'default']);
    assert.equal(c.model.timestepMode, 'default');
    assert.ok(resolve([]).notes.some((n) => /timesteps: default \(guessed from the model name/.test(n)));
  });

  test('run length, optimizer and clipping as train.py decides them', () => {
    assert.equal(resolve([]).schedule.maxTrainSteps, 2000);
    assert.equal(resolve(['--num_train_epochs', '3']).schedule.maxTrainSteps, null, 'epochs decide without --max_train_steps');
    assert.equal(resolve(['--num_train_epochs', '3', '--max_train_steps', '5']).schedule.maxTrainSteps, 5);
    assert.equal(resolve(['--use_adafactor']).clipGradNorm, null, '--use_adafactor skips clipping');
    assert.equal(resolve(['--sdxl']).clipGradNorm, 1, '--sdxl alone still clips');
    assert.equal(resolve(['--gradient_accumulation_steps', '4', '--scale_lr', '--learning_rate', '1e-8']).schedule.learningRate, 1e-8 * 4 * 2);
  });

  test('bad values are refused by name before any work', () => {
    assert.throws(() => parseTrainArgs([...BASE, '--resolution', '0']), /--resolution must be >= 1/);
    assert.throws(() => parseTrainArgs([...BASE, '--train_batch_size', '0']), /--train_batch_size must be >= 1/);
    assert.throws(() => parseTrainArgs([...BASE, '--proportion_empty_prompts', '1.5']), /must be <= 1/);
    assert.throws(() => parseTrainArgs([...BASE, '--learning_rate', 'fast']), /--learning_rate must be a number/);
    assert.throws(() => resolve(['--image_column', 'picture']), /--image_column applies to SFT/);
  });
});
