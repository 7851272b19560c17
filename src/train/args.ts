// The flags of the reference train.py, each under its own name (`--beta_dpo` and `--beta-dpo` both
// work), with the reference's defaults and a help text written once here; plus our own few
// (`--config`, `--checkpoints_total_limit`, `--timestep_mode`, `--offload_frozen`, `--device`,
// `--max_bad_fraction`, `--exclude_rows`).
// Flags the reference accepts that this build does not implement fail loudly when set, never
// silently. config.ts turns the parsed flags into the typed training config.
import { readFileSync } from 'node:fs';

export type FlagType = 'string' | 'int' | 'float' | 'boolean';

export interface FlagSpec {
  type: FlagType;
  default: string | number | boolean | null;
  help: string;
  choices?: readonly string[];
  /** Smallest allowed value (numbers). */
  min?: number;
  /** Largest allowed value (numbers). */
  max?: number;
  /** Set to a non-default value: refused with this reason. */
  unsupported?: string;
}

export const FLAGS = {
  pretrained_model_name_or_path: { type: 'string', default: null, help: 'Model folder, Hub id, or (with the demo) generated tiny model. Required.' },
  revision: { type: 'string', default: null, help: 'Hub revision (branch, tag or commit) of the model.' },
  pretrained_vae_model_name_or_path: { type: 'string', default: null, help: 'A VAE to use instead of the pipeline\'s (a folder without vae/ subfolder, e.g. madebyollin/sdxl-vae-fp16-fix).' },
  unet_init: { type: 'string', default: '', help: 'Start from this UNet (a pipeline folder with unet/); the reference UNet is loaded from it too.' },
  dataset_name: { type: 'string', default: null, help: 'Preference data: a Hub dataset id, a folder of parquet/tar shards, a .jsonl/.csv table or a w/ + l/ folder.' },
  dataset_config_name: { type: 'string', default: null, help: 'Hub dataset config (not supported: datasets are read as shards).', unsupported: 'dataset configs are not supported; point --dataset_name at the shards' },
  train_data_dir: { type: 'string', default: null, help: 'SFT: an image folder with metadata.jsonl (as --dataset_name when that is not given).' },
  image_column: { type: 'string', default: 'image', help: 'SFT on a single-image dataset (parquet shards, a .jsonl/.csv table or an image folder with metadata.jsonl): the image column. DPO reads jpg_0/jpg_1 (image_0/image_1 in tables).' },
  caption_column: { type: 'string', default: 'caption', help: 'Caption column (parquet, tables and metadata.jsonl).' },
  split: { type: 'string', default: 'train', help: 'Dataset split.' },
  max_train_samples: { type: 'int', default: null, min: 1, help: 'Keep N rows (a seeded shuffle, then the first N).' },
  dreamlike_pairs_only: { type: 'boolean', default: false, help: 'Keep pairs whose two models both contain "dream".' },
  cache_dir: { type: 'string', default: null, help: 'Hugging Face cache folder (default: HF_HUB_CACHE / HF_HOME).' },
  output_dir: { type: 'string', default: 'sd-model-finetuned', help: 'Where checkpoints, logs and the final pipeline go.' },
  logging_dir: { type: 'string', default: 'logs', help: 'Log folder under output_dir; the run logs in its <tracker_project_name>/ subfolder, as accelerate does (TensorBoard events, metrics.jsonl).' },
  report_to: { type: 'string', default: 'tensorboard', help: 'tensorboard (also writes metrics.jsonl) or none.', choices: ['tensorboard', 'none'] },
  tracker_project_name: { type: 'string', default: 'tuning', help: 'Run name: the logs go to <output_dir>/<logging_dir>/<tracker_project_name>/ (accelerate\'s TensorBoard layout).' },
  seed: { type: 'int', default: null, help: 'Seed (each process uses seed + rank).' },
  resolution: { type: 'int', default: null, min: 1, help: 'Image size (default 512, 1024 with --sdxl): a multiple of what the model needs (64 for SD, 32 for SDXL), checked against its configs before any work.' },
  random_crop: { type: 'boolean', default: false, help: 'Random instead of center crop.' },
  no_hflip: { type: 'boolean', default: false, help: 'No random horizontal flip.' },
  train_batch_size: { type: 'int', default: 1, min: 1, help: 'Pairs per device per micro-step.' },
  num_train_epochs: { type: 'int', default: 100, min: 1, help: 'Epochs to run when --max_train_steps is not given (train.py always lets its max_train_steps default win).' },
  max_train_steps: { type: 'int', default: 2000, min: 1, help: 'Optimizer updates to run.' },
  gradient_accumulation_steps: { type: 'int', default: 1, min: 1, help: 'Micro-steps per optimizer update.' },
  gradient_checkpointing: { type: 'boolean', default: false, help: 'Recompute the UNet\'s activations in backward: the same gradients with less memory, about a third more compute.' },
  dataloader_num_workers: { type: 'int', default: 0, min: 0, help: 'Data worker threads.' },
  learning_rate: { type: 'float', default: 1e-8, min: 0, help: 'Learning rate (per sample with --scale_lr).' },
  scale_lr: { type: 'boolean', default: false, help: 'lr x accumulation x batch x processes.' },
  lr_scheduler: { type: 'string', default: 'constant_with_warmup', help: 'linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup.', choices: ['linear', 'cosine', 'cosine_with_restarts', 'polynomial', 'constant', 'constant_with_warmup'] },
  lr_warmup_steps: { type: 'int', default: 500, min: 0, help: 'Warm-up updates.' },
  use_adafactor: { type: 'boolean', default: false, help: 'Adafactor instead of AdamW (also disables gradient clipping, as the reference).' },
  allow_tf32: { type: 'boolean', default: false, help: 'TF32 matmuls on Ampere+ GPUs.' },
  adam_beta1: { type: 'float', default: 0.9, min: 0, max: 0.999999, help: 'AdamW beta1.' },
  adam_beta2: { type: 'float', default: 0.999, min: 0, max: 0.999999, help: 'AdamW beta2.' },
  adam_weight_decay: { type: 'float', default: 1e-2, min: 0, help: 'Weight decay (AdamW and Adafactor).' },
  adam_epsilon: { type: 'float', default: 1e-8, min: 0, help: 'AdamW epsilon.' },
  max_grad_norm: { type: 'float', default: 1.0, min: 0, help: 'Global gradient-norm clip (skipped with --use_adafactor, as train.py).' },
  hub_model_id: { type: 'string', default: null, help: 'Hub upload target (not supported yet).', unsupported: 'uploading to the Hub is not supported yet' },
  mixed_precision: { type: 'string', default: 'fp16', help: 'no, fp16 (grad scaler; CUDA only) or bf16: the trained UNet\'s forward runs under autocast, the frozen models in that dtype. The fp16 default becomes no on a CPU run (said at start); fp16 asked for on a CPU is refused.', choices: ['no', 'fp16', 'bf16'] },
  local_rank: { type: 'int', default: -1, min: -1, help: 'The CUDA device index of this process (LOCAL_RANK overrides it, as train.py). Refused on a CPU run unless -1 or 0.' },
  checkpointing_steps: { type: 'int', default: 500, min: 1, help: 'Save the full training state every N updates.' },
  checkpoints_total_limit: { type: 'int', default: null, min: 1, help: 'Keep at most N checkpoints.' },
  resume_from_checkpoint: { type: 'string', default: 'latest', help: '"latest", a checkpoint folder, or "none".' },
  hard_skip_resume: { type: 'boolean', default: false, help: 'On resume, start the interrupted epoch\'s data from its beginning (train.py\'s flag, which skips its slow data replay); without it the run continues at the exact next batch.' },
  noise_offset: { type: 'float', default: 0, min: 0, help: 'Noise offset scale.' },
  input_perturbation: { type: 'float', default: 0, min: 0, help: 'Input perturbation scale.' },
  proportion_empty_prompts: { type: 'float', default: 0.2, min: 0, max: 1, help: 'Probability of training on an empty caption.' },
  sdxl: { type: 'boolean', default: false, help: 'SDXL (forces Adafactor and gradient checkpointing, as the reference).' },
  sft: { type: 'boolean', default: false, help: 'Supervised fine-tuning on the preferred images instead of DPO.' },
  beta_dpo: { type: 'float', default: 5000, min: 0, help: 'DPO temperature beta.' },
  timestep_mode: { type: 'string', default: null, help: 'default, refiner (t % 200) or turbo (250 (t % 4) + 249 with a zero-terminal-SNR schedule). Unset: guessed from the model name as train.py does, and said at start.', choices: ['default', 'refiner', 'turbo'] },
  offload_frozen: { type: 'boolean', default: false, help: 'Keep the VAE, text encoders and reference UNet in host memory and move each to the device only for its call (train.py\'s SDXL behaviour); default: resident on the device.' },
  device: { type: 'string', default: 'auto', help: 'auto (cuda:<local_rank> when CUDA is available, else cpu), cpu, cuda or cuda:N.' },
  max_bad_fraction: { type: 'float', default: 0.05, min: 0, max: 1, help: 'Stop (after a checkpoint) when more than this share of the rows read are unusable (judged from 100 rows on); each bad row is listed in <output_dir>/bad_rows.jsonl.' },
  exclude_rows: { type: 'string', default: null, help: 'A file of row ids to leave out (one per line, or bad_rows.jsonl; data --verify --write_exclude writes one).' },
  choice_model: { type: 'string', default: '', help: 'AI feedback scorer (not supported yet).', unsupported: 'AI-feedback relabelling (--choice_model) is not supported yet' },
  config: { type: 'string', default: null, help: 'A JSON file of flags (command-line flags override it).' },
} as const satisfies Record<string, FlagSpec>;

export type FlagName = keyof typeof FLAGS;

/** A flag's value type: booleans; strings and numbers, nullable only where the default is null. */
type FlagValue<S> = S extends { type: 'boolean' } ? boolean
  : S extends { type: 'string'; default: null } ? string | null
  : S extends { type: 'string' } ? string
  : S extends { default: null } ? number | null
  : number;

export type TrainFlags = { -readonly [K in FlagName]: FlagValue<(typeof FLAGS)[K]> };

/** The flags' values (defaults filled in) and which of them the user set, on the command line or in --config. */
export type ParsedTrainArgs = TrainFlags & { readonly given: ReadonlySet<FlagName> };

const FLOAT32_MAX = 3.4028234663852886e38;

export class ArgsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArgsError';
  }
}

function convert(name: FlagName, raw: unknown): string | number | boolean | null {
  const spec: FlagSpec = FLAGS[name];
  if (raw === null) return null;
  switch (spec.type) {
    case 'boolean':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      throw new ArgsError(`--${name} is a switch; got '${String(raw)}'`);
    case 'int':
    case 'float': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : Number.NaN;
      if (spec.type === 'int' ? !Number.isInteger(n) : !Number.isFinite(n)) throw new ArgsError(`--${name} must be ${spec.type === 'int' ? 'an integer' : 'a number'}, got '${String(raw)}'`);
      // every float flag ends up in float32 arithmetic, where a larger value is an overflow error mid-run
      if (spec.type === 'float' && Math.abs(n) > FLOAT32_MAX) throw new ArgsError(`--${name} must be within the float32 range (|x| <= 3.4e38), got ${n}`);
      if (spec.min !== undefined && n < spec.min) throw new ArgsError(`--${name} must be >= ${spec.min}, got ${n}`);
      if (spec.max !== undefined && n > spec.max) throw new ArgsError(`--${name} must be <= ${spec.max}, got ${n}`);
      return n;
    }
    default: {
      const s = String(raw);
      if (spec.choices && !spec.choices.includes(s)) throw new ArgsError(`--${name} must be one of ${spec.choices.join(', ')}; got '${s}'`);
      return s;
    }
  }
}

/** Parses train.py-style argv (`--name value`, `--name=value`, dashes or underscores), over a --config file. */
export function parseTrainArgs(argv: string[]): ParsedTrainArgs {
  const given: Partial<Record<FlagName, unknown>> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new ArgsError(`unexpected argument '${a}' (flags start with --)`);
    const eq = a.indexOf('=');
    const name = (eq > 0 ? a.slice(2, eq) : a.slice(2)).replace(/-/g, '_') as FlagName;
    const spec: FlagSpec | undefined = FLAGS[name];
    if (!spec) throw new ArgsError(`unknown flag '${a.split('=')[0]}' (see --help)`);
    if (eq > 0) given[name] = a.slice(eq + 1);
    else if (spec.type === 'boolean' && (i + 1 >= argv.length || argv[i + 1]!.startsWith('--'))) given[name] = true;
    else {
      if (i + 1 >= argv.length) throw new ArgsError(`--${name} needs a value`);
      given[name] = argv[++i];
    }
  }
  let fromFile: Record<string, unknown> = {};
  if (given.config) {
    try {
      fromFile = JSON.parse(readFileSync(String(given.config), 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new ArgsError(`--config ${String(given.config)}: ${(e as Error).message}`);
    }
    for (const k of Object.keys(fromFile)) if (!(k.replace(/-/g, '_') in FLAGS)) throw new ArgsError(`--config ${String(given.config)}: unknown flag '${k}'`);
  }
  const fileValue = (name: string): unknown => (name in fromFile ? fromFile[name] : fromFile[name.replace(/_/g, '-')]);
  const out = {} as Record<FlagName, string | number | boolean | null>;
  const set = new Set<FlagName>();
  for (const name of Object.keys(FLAGS) as FlagName[]) {
    const spec: FlagSpec = FLAGS[name];
    const raw = name in given ? given[name] : fileValue(name) !== undefined ? fileValue(name) : spec.default;
    if (name in given || fileValue(name) !== undefined) set.add(name);
    out[name] = convert(name, raw ?? null);
    if (spec.unsupported && out[name] !== spec.default && out[name] !== null && out[name] !== '') throw new ArgsError(`--${name}: ${spec.unsupported}`);
  }
  const args = out as TrainFlags;
  if (!args.pretrained_model_name_or_path) throw new ArgsError('--pretrained_model_name_or_path is required');
  if (!args.dataset_name && !args.train_data_dir) throw new ArgsError('give --dataset_name (or --train_data_dir for SFT image folders)');
  return Object.assign(args, { given: set });
}

export function trainHelp(): string {
  const lines = ['usage: diffusion-dpo train --pretrained_model_name_or_path M --dataset_name D [flags]', '',
    'The flags of the reference train.py (each also with dashes: --beta-dpo), with its defaults:', ''];
  for (const [name, spec] of Object.entries(FLAGS) as [string, FlagSpec][]) {
    const def = spec.default === null || spec.default === '' ? '' : ` (default ${String(spec.default)})`;
    lines.push(`  --${name}${spec.type === 'boolean' ? '' : ` ${spec.type.toUpperCase()}`}`.padEnd(44) + spec.help + def);
  }
  return lines.join('\n');
}
