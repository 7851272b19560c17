// The training config: train.py's flags resolved once, with every default settled and every
// choice that train.py makes inside its loop (SD vs SDXL, DPO vs SFT, the optimizer and whether it
// clips, mixed precision, refiner/turbo timesteps, the device) made here, before any work. The
// recipe reads only this; nothing downstream restates a default. `notes` lists the decisions a
// user should see at start (what was forced, guessed or changed, and why).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../torch/index.js';
import { ArgsError, type ParsedTrainArgs } from './args.js';
import { resolveDeviceFlag } from '../util/device_flag.js';
import type { TimestepMode } from './step.js';
import { processLayout, type ProcessLayout } from './data_parallel.js';
import type { PairLossType } from './objectives.js';
import type { NoisingConfig } from './step.js';
import { applyPreset, type PresetName } from './presets.js';
import { checkScorerName, type ScorerName } from '../scoring/types.js';

export interface AdamWConfig {
  kind: 'adamw';
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

export interface AdafactorConfig {
  kind: 'adafactor';
  weightDecay: number;
}

export interface LoraConfig {
  /** null with init: each layer's rank and α come from the file. */
  rank: number | null;
  alpha: number | null;
  dropout: number;
  /** Layer patterns (torch.nn.matchesTarget); empty with init (the file's layers). */
  targets: string[];
  /** A LoRA file or folder the adapters start from. */
  init: string | null;
}

export interface TrainConfig {
  model: {
    /** As given (a folder or a Hub id); resolved to a folder at setup. */
    name: string;
    revision: string | null;
    vae: string | null;
    unetInit: string | null;
    cacheDir: string | null;
    sdxl: boolean;
    timestepMode: TimestepMode;
  };
  data: {
    source: string;
    split: string;
    imageColumn: string;
    captionColumn: string;
    maxTrainSamples: number | null;
    dreamlikePairsOnly: boolean;
    resolution: number;
    randomCrop: boolean;
    hflip: boolean;
    proportionEmptyPrompts: number;
    numWorkers: number;
    /** A file of row ids to leave out. */
    excludeRows: string | null;
    /** The largest share of unusable rows a run tolerates. */
    maxBadFraction: number;
    /** A latent cache folder to train from instead of the images and the frozen encoders. */
    latentCache: string | null;
    /** AI feedback: labels from a reward model instead of the dataset's (choice_labels.ts). */
    choice: { labels: string | null; scorer: ScorerName | null; model: string | null; processor: string | null };
  };
  objective: {
    method: 'dpo' | 'sft';
    /** The pairwise objective of a DPO-style run (sigmoid for SFT, where it has no part). */
    lossType: PairLossType;
    betaDpo: number;
    betaMapo: number;
    mapoSnrValue: number;
    /** KTO's λ_D and λ_U. */
    ktoLambdaDesirable: number;
    ktoLambdaUndesirable: number;
    noiseOffset: number;
    inputPerturbation: number;
    /** Per-pair generators (--sample_seeds) instead of the default generator's batch draws. */
    sampleSeeds: boolean;
    /** How x_t is reached (forward diffusion, or DDIM inversion of x₀). */
    noising: NoisingConfig;
  };
  /** LoRA training (--lora_rank or --lora_init); null: the whole UNet is trained. */
  lora: LoraConfig | null;
  batch: {
    /** Pairs (DPO) or images (SFT) per process and micro-step. */
    perDevice: number;
    accumulation: number;
    worldSize: number;
    rank: number;
  };
  /** Where this process sits (one process unless WORLD_SIZE or SLURM_NTASKS > 1) and the c10d settings of multi-process runs. */
  distributed: { layout: ProcessLayout; timeoutMs: number; bucketBytes: number };
  schedule: {
    /** null: num_train_epochs epochs of updates. */
    maxTrainSteps: number | null;
    numTrainEpochs: number;
    /** After --scale_lr. */
    learningRate: number;
    lrScheduler: torch.optim.ScheduleName;
    warmupSteps: number;
  };
  optimizer: AdamWConfig | AdafactorConfig;
  /** Global gradient-norm clip on update steps; null when train.py skips it (--use_adafactor). */
  clipGradNorm: number | null;
  precision: {
    mixed: 'no' | 'fp16' | 'bf16';
    /** The dtype of the frozen models and of the trained UNet's autocast region. */
    weightDtype: torch.DType;
    allowTf32: boolean;
    /** Deterministic kernels; otherwise cuDNN benchmarks its algorithms (the shapes are static). */
    deterministic: boolean;
    /** The only SDPA kernel allowed, or auto. */
    sdpaBackend: 'auto' | 'flash' | 'efficient' | 'math' | 'cudnn';
  };
  memory: {
    gradientCheckpointing: boolean;
    offloadFrozen: boolean;
    /** Convolution weights in channels-last (NHWC) memory format. */
    channelsLast: boolean;
  };
  device: torch.Device;
  output: {
    dir: string;
    /** <output_dir>/<logging_dir>/<tracker_project_name>: where accelerate's TensorBoard tracker logs. */
    logDir: string;
    reportTo: 'tensorboard' | 'none';
    checkpointingSteps: number;
    checkpointsTotalLimit: number | null;
    /** Write checkpoints with training paused instead of from a host copy in the background. */
    syncCheckpointSaves: boolean;
    /** 'latest', a checkpoint folder, or null (start fresh). */
    resume: string | null;
    hardSkipResume: boolean;
  };
  /** --seed; null: the checkpoint's seed when resuming, else a random one (chosen at setup). */
  seed: number | null;
  /** Decisions to print at start. */
  notes: string[];
}

export interface ConfigEnvironment {
  env: Record<string, string | undefined>;
  cudaDevices: number;
  /** Why CUDA would be expected though none is available (torch.cudaExpectedButMissing), if so. */
  cudaMissing?: string | null;
}

function hostEnvironment(): ConfigEnvironment {
  return { env: process.env, cudaDevices: torch.cuda.isAvailable() ? torch.cuda.deviceCount() : 0, cudaMissing: torch.cudaExpectedButMissing() };
}

/**
 * Where full-UNet Diffusion-DPO was reported to collapse: the paper trains at 1e-8 per pair of the
 * effective batch (lr 1e-8 with --scale_lr) and β 2500–5000; users reported collapse from about 5e-8
 * per pair at the paper's β (../docs/training.md#diagnostics).
 */
const COLLAPSE = {
  minBeta: 1000,
  perPairLr: 5e-8,
  source: 'Source: the "Rethinking DPO" ablation (AAAI 2026), see docs/training.md#diagnostics.',
};

/** --noising and its options, checked against the objective (an inversion by the reference needs one). */
function resolveNoising(a: ParsedTrainArgs, method: 'dpo' | 'sft', lossType: PairLossType): NoisingConfig {
  if (a.noising === 'forward') {
    for (const f of ['inversion_steps', 'inversion_eta', 'inversion_model'] as const) if (a.given.has(f)) throw new ArgsError(`--${f} applies to --noising ddim_inversion`);
    return { kind: 'forward' };
  }
  for (const f of ['noise_offset', 'input_perturbation'] as const) {
    if (a.given.has(f) && a[f] !== 0) throw new ArgsError(`--${f} changes the fresh noise of forward diffusion; --noising ddim_inversion draws none`);
  }
  if (a.sample_seeds && a.inversion_eta > 0) throw new ArgsError('--inversion_eta > 0 draws from the default generator; it cannot be combined with --sample_seeds');
  const model = a.inversion_model as 'reference' | 'trained';
  if (model === 'reference' && (method === 'sft' || lossType === 'mapo')) {
    throw new ArgsError(`--noising ddim_inversion inverts with the reference model, which ${method === 'sft' ? 'SFT' : 'MaPO'} does not load: add --inversion_model trained`);
  }
  return { kind: 'ddim_inversion', steps: a.inversion_steps, eta: a.inversion_eta, model };
}

/** --choice_model / --choice_labels: which labels a run trains on. */
function resolveChoice(a: ParsedTrainArgs, method: 'dpo' | 'sft', worldSize: number): TrainConfig['data']['choice'] {
  for (const f of ['choice_model_path', 'choice_processor'] as const) if (a.given.has(f) && !a.choice_model) throw new ArgsError(`--${f} applies to --choice_model`);
  if (!a.choice_model && a.choice_labels === null) return { labels: null, scorer: null, model: null, processor: null };
  if (a.latent_cache) throw new ArgsError('AI-feedback labels (--choice_model, --choice_labels) cannot train from --latent_cache yet: the cache records the human labels');
  if (method === 'sft') throw new ArgsError('--choice_model and --choice_labels relabel preference pairs; SFT trains on single images');
  if (!a.choice_model) {
    if (!existsSync(a.choice_labels!)) throw new ArgsError(`--choice_labels ${a.choice_labels}: no such file (diffusion-dpo relabel writes one; or add --choice_model NAME to score the pairs into it)`);
    return { labels: a.choice_labels, scorer: null, model: null, processor: null };
  }
  let scorer: ScorerName;
  try {
    scorer = checkScorerName(a.choice_model);
  } catch (e) {
    throw new ArgsError(`--choice_model: ${(e as Error).message}`);
  }
  const labels = a.choice_labels ?? join(a.output_dir, `choice_labels.${scorer}.jsonl`);
  // scoring runs in one process; several would each score the whole dataset
  if (worldSize > 1 && !existsSync(labels)) throw new ArgsError(`--choice_model scores the pairs in one process: run diffusion-dpo relabel --scorer ${scorer} --output ${labels} first, then train with --choice_labels ${labels}`);
  return { labels, scorer, model: a.choice_model_path, processor: a.choice_processor };
}

/** The LoRA settings of the flags, or null (whole-UNet training). */
function resolveLora(a: ParsedTrainArgs): LoraConfig | null {
  const on = a.lora_rank !== null || a.lora_init !== null;
  if (!on) {
    for (const f of ['lora_alpha', 'lora_dropout', 'lora_target_modules'] as const) {
      if (a.given.has(f)) throw new ArgsError(`--${f} applies to LoRA training: add --lora_rank N (or --lora_init FILE)`);
    }
    return null;
  }
  if (a.lora_init !== null) {
    for (const f of ['lora_rank', 'lora_alpha', 'lora_target_modules'] as const) {
      if (a.given.has(f)) throw new ArgsError(`--${f} cannot be combined with --lora_init: the adapters' ranks, alphas and layers come from ${a.lora_init}`);
    }
    return { rank: null, alpha: null, dropout: a.lora_dropout, targets: [], init: a.lora_init };
  }
  const targets = a.lora_target_modules.split(',').map((t) => t.trim()).filter(Boolean);
  if (targets.length === 0) throw new ArgsError('--lora_target_modules names no layer');
  return { rank: a.lora_rank, alpha: a.lora_alpha, dropout: a.lora_dropout, targets, init: null };
}

/** train.py decides refiner/turbo timesteps by substrings of the model name. */
export function guessTimestepMode(modelName: string): TimestepMode {
  return modelName.includes('refiner') ? 'refiner' : modelName.includes('turbo') ? 'turbo' : 'default';
}

export function resolveTrainConfig(args: ParsedTrainArgs, host: ConfigEnvironment = hostEnvironment()): TrainConfig {
  const notes: string[] = [];
  let layout: ProcessLayout;
  try {
    layout = processLayout(host.env);
  } catch (e) {
    throw new ArgsError((e as Error).message);
  }
  const worldSize = layout.worldSize;
  // a preset fills in what the user did not give, for this many processes, before anything reads the flags
  let a = args;
  let presetSet: ReadonlySet<string> = new Set();
  if (args.preset) {
    const applied = applyPreset(args, args.preset as PresetName, worldSize);
    a = applied.args;
    presetSet = applied.set;
    notes.push(...applied.lines);
  }
  for (const f of ['ddp_bucket_mb', 'ddp_timeout'] as const) if (worldSize === 1 && a.given.has(f)) notes.push(`--${f} has no effect in a single-process run`);
  // train.py: LOCAL_RANK from the environment wins over --local_rank. Several processes on the CPU
  // (Gloo) have local ranks but no CUDA device to pick
  const envLocalRank = Number(host.env.LOCAL_RANK ?? -1);
  // (a process that sees one GPU, as SLURM's --gpus-per-task=1 binds them, trains on it whatever its local rank)
  const localRank = worldSize > 1
    ? (host.cudaDevices > 0 && a.device !== 'cpu' ? (host.cudaDevices === 1 ? 0 : layout.localRank) : -1)
    : envLocalRank !== -1 && Number.isInteger(envLocalRank) ? envLocalRank : a.local_rank;
  const device = resolveDeviceFlag(a.device, localRank, host.cudaDevices);
  const onCuda = torch.deviceType(device) === 'cuda';
  if (a.device === 'auto' && !onCuda && host.cudaMissing) notes.push(`WARNING: training on the CPU: ${host.cudaMissing}; diffusion-dpo doctor says more`);

  let mixed = a.mixed_precision as TrainConfig['precision']['mixed'];
  if (mixed === 'fp16' && !onCuda) {
    if (a.given.has('mixed_precision')) {
      throw new ArgsError('--mixed_precision fp16 needs a CUDA device (fp16 autocast and its grad scaler); on the CPU use bf16 or no');
    }
    notes.push('mixed precision: fp16 (the default) needs a CUDA device, so this CPU run trains in float32 (--mixed_precision bf16 for CPU autocast)');
    mixed = 'no';
  }
  const weightDtype: torch.DType = mixed === 'fp16' ? 'float16' : mixed === 'bf16' ? 'bfloat16' : 'float32';

  const timestepMode = (a.timestep_mode as TimestepMode | null) ?? guessTimestepMode(a.pretrained_model_name_or_path!);
  notes.push(a.timestep_mode !== null
    ? `timesteps: ${timestepMode} (--timestep_mode)`
    : `timesteps: ${timestepMode} (guessed from the model name, as train.py does; --timestep_mode overrides)`);

  const lora = resolveLora(a);
  // train.py forces Adafactor on SDXL to fit a whole UNet's optimizer state; adapters are small, and
  // AdamW is what LoRA recipes use (diffusers' DPO example)
  const adafactor = a.use_adafactor || (a.sdxl && !lora);
  if (a.sdxl && !a.use_adafactor) notes.push(lora ? '--sdxl with LoRA: AdamW (train.py forces Adafactor only to fit a whole UNet\'s optimizer state; --use_adafactor for it)' : '--sdxl: Adafactor instead of AdamW, as train.py (gradients are still clipped)');
  if (lora) {
    notes.push(lora.init ? `LoRA: adapters from ${lora.init} (its ranks, alphas and layers), dropout ${lora.dropout}` :
      `LoRA: rank ${lora.rank}, alpha ${lora.alpha ?? lora.rank}, dropout ${lora.dropout}, layers ${lora.targets.join(', ')}`);
  }
  const gradientCheckpointing = a.gradient_checkpointing || a.sdxl;
  if (a.sdxl && !a.gradient_checkpointing) notes.push('--sdxl: gradient checkpointing on, as train.py');

  // train.py's max_train_steps defaults to 2000 and always wins, so its --num_train_epochs never
  // matters; here --num_train_epochs without --max_train_steps decides the run's length
  const epochsDecide = a.given.has('num_train_epochs') && !a.given.has('max_train_steps');
  if (epochsDecide) notes.push(`length: ${a.num_train_epochs} epoch(s) (--num_train_epochs without --max_train_steps)`);
  const learningRate = a.scale_lr ? a.learning_rate * a.gradient_accumulation_steps * a.train_batch_size * worldSize : a.learning_rate;
  if (a.sft && a.given.has('loss_type') && a.loss_type !== 'sft') throw new ArgsError(`--sft trains on the preferred images alone; it cannot be combined with --loss_type ${a.loss_type}`);
  const method = a.sft || a.loss_type === 'sft' ? 'sft' : 'dpo';
  const lossType = (method === 'sft' ? 'sigmoid' : a.loss_type) as PairLossType;
  for (const [f, owner] of [['beta_mapo', 'mapo'], ['mapo_snr_value', 'mapo'], ['kto_lambda_desirable', 'kto'], ['kto_lambda_undesirable', 'kto']] as const) {
    if (a.given.has(f) && lossType !== owner) throw new ArgsError(`--${f} applies to --loss_type ${owner} (this run's objective is ${method === 'sft' ? 'sft' : lossType})`);
  }
  // Diffusion-KTO's β (its --beta_dpo) defaults to 1000, not train.py's 5000
  const betaChosen = a.given.has('beta_dpo') || presetSet.has('beta_dpo');
  const betaDpo = lossType === 'kto' && !betaChosen ? 1000 : a.beta_dpo;
  if (lossType === 'kto') {
    if (a.latent_cache) throw new ArgsError('--loss_type kto cannot train from --latent_cache yet (its images are drawn on their own, and labelled single images have no cache layout)');
    if (a.sample_seeds) throw new ArgsError('--loss_type kto with --sample_seeds is not supported (its per-sample draws are laid out for pairs sharing noise)');
  }
  // train.py accepts --beta_dpo with --sft (and ignores it): said, not refused, so its command lines still run
  if (a.given.has('beta_dpo') && (method === 'sft' || lossType === 'mapo')) notes.push(`--beta_dpo has no part in ${method === 'sft' ? 'SFT' : 'MaPO (its weight is --beta_mapo)'}`);
  if (method === 'dpo' && lossType !== 'sigmoid') {
    const detail = lossType === 'mapo' ? `beta_mapo ${a.beta_mapo}, snr value ${a.mapo_snr_value}; no reference UNet`
      : lossType === 'kto' ? `beta ${betaDpo}${betaChosen ? '' : ' (Diffusion-KTO\'s default)'}, lambda_d ${a.kto_lambda_desirable}, lambda_u ${a.kto_lambda_undesirable}` : `beta ${a.beta_dpo}`;
    notes.push(`objective: ${lossType} (${detail})`);
  }
  const perPairLr = learningRate / (a.train_batch_size * a.gradient_accumulation_steps * worldSize);
  if (method === 'dpo' && lossType === 'sigmoid' && !lora && a.beta_dpo >= COLLAPSE.minBeta && perPairLr >= COLLAPSE.perPairLr) {
    notes.push(`WARNING: β ${a.beta_dpo} with a learning rate of ${perPairLr.toExponential(1)} per pair of the effective batch is in the range reported to collapse ` +
      `full-size (SD 1.5) Diffusion-DPO (from ${COLLAPSE.perPairLr.toExponential(0)} per pair at the paper's β; the paper trains at 1e-8 per pair: --learning_rate 1e-8 --scale_lr). ${COLLAPSE.source}`);
  }
  const noising = resolveNoising(a, method, lossType);
  if (noising.kind === 'ddim_inversion') notes.push(`noising: DDIM inversion of x0 in ${noising.steps} steps by the ${noising.model === 'reference' ? 'reference' : 'trained'} UNet, eta ${noising.eta} (InPO)`);
  if (method === 'dpo' && lossType !== 'kto' && a.given.has('image_column')) {
    throw new ArgsError('--image_column applies to SFT and KTO on single-image datasets; DPO reads the pair columns (jpg_0/jpg_1, image_0/image_1), as train.py');
  }
  const choice = resolveChoice(a, method, worldSize);
  if (choice.scorer) notes.push(`AI feedback: pairs labelled by ${choice.scorer}${choice.model ? ` (${choice.model})` : ''} into ${choice.labels}`);
  if (a.latent_cache && a.random_crop) {
    throw new ArgsError('--random_crop cannot train from --latent_cache: a random crop draws new offsets at every step, which no cache holds (a cache has center crops)');
  }
  const outputDir = a.output_dir;
  return {
    model: {
      name: a.pretrained_model_name_or_path!, revision: a.revision, vae: a.pretrained_vae_model_name_or_path,
      unetInit: a.unet_init || null, cacheDir: a.cache_dir, sdxl: a.sdxl, timestepMode,
    },
    data: {
      source: (a.dataset_name ?? a.train_data_dir)!, split: a.split, imageColumn: a.image_column, captionColumn: a.caption_column,
      maxTrainSamples: a.max_train_samples, dreamlikePairsOnly: a.dreamlike_pairs_only, resolution: a.resolution ?? (a.sdxl ? 1024 : 512),
      randomCrop: a.random_crop, hflip: !a.no_hflip, proportionEmptyPrompts: a.proportion_empty_prompts, numWorkers: a.dataloader_num_workers,
      excludeRows: a.exclude_rows, maxBadFraction: a.max_bad_fraction, latentCache: a.latent_cache, choice,
    },
    objective: {
      method, lossType, betaDpo, betaMapo: a.beta_mapo, mapoSnrValue: a.mapo_snr_value,
      ktoLambdaDesirable: a.kto_lambda_desirable, ktoLambdaUndesirable: a.kto_lambda_undesirable,
      noiseOffset: a.noise_offset, inputPerturbation: a.input_perturbation, sampleSeeds: a.sample_seeds, noising,
    },
    lora,
    batch: { perDevice: a.train_batch_size, accumulation: a.gradient_accumulation_steps, worldSize, rank: layout.rank },
    distributed: { layout, timeoutMs: a.ddp_timeout * 1000, bucketBytes: Math.round(a.ddp_bucket_mb * 2 ** 20) },
    schedule: {
      maxTrainSteps: epochsDecide ? null : a.max_train_steps, numTrainEpochs: a.num_train_epochs, learningRate,
      lrScheduler: a.lr_scheduler as torch.optim.ScheduleName, warmupSteps: a.lr_warmup_steps,
    },
    optimizer: adafactor
      ? { kind: 'adafactor', weightDecay: a.adam_weight_decay }
      : { kind: 'adamw', betas: [a.adam_beta1, a.adam_beta2], eps: a.adam_epsilon, weightDecay: a.adam_weight_decay },
    // train.py skips clipping only when --use_adafactor was passed, so --sdxl alone still clips
    clipGradNorm: a.use_adafactor ? null : a.max_grad_norm,
    precision: { mixed, weightDtype, allowTf32: a.allow_tf32, deterministic: a.deterministic, sdpaBackend: a.sdpa_backend as TrainConfig['precision']['sdpaBackend'] },
    memory: { gradientCheckpointing, offloadFrozen: a.offload_frozen, channelsLast: a.channels_last },
    device,
    output: {
      dir: outputDir, logDir: join(outputDir, a.logging_dir, a.tracker_project_name), reportTo: a.report_to as 'tensorboard' | 'none',
      checkpointingSteps: a.checkpointing_steps, checkpointsTotalLimit: a.checkpoints_total_limit, syncCheckpointSaves: a.sync_checkpoint_saves,
      resume: a.resume_from_checkpoint === 'none' || a.resume_from_checkpoint === '' ? null : a.resume_from_checkpoint,
      hardSkipResume: a.hard_skip_resume,
    },
    seed: a.seed,
    notes,
  };
}
