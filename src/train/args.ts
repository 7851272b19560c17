// The flags of the reference train.py, each under its own name (`--beta_dpo` and `--beta-dpo` both
// work), with the reference's defaults and a help text written once here; plus our own few
// (`--config`, `--checkpoints_total_limit`, `--sync_checkpoint_saves`, `--timestep_mode`, `--offload_frozen`, `--device`,
// `--deterministic`, `--channels_last`, `--sdpa_backend`, `--max_bad_fraction`, `--exclude_rows`, `--latent_cache`,
// `--ddp_bucket_mb`, `--ddp_timeout`, `--sample_seeds`, `--loss_type`, `--beta_mapo`, `--mapo_snr_value`, the `--lora_*`,
// `--kto_*`, `--noising`/`--inversion_*` flags, `--preset`).
// Flags the reference accepts that this build does not implement fail loudly when set, never
// silently. config.ts turns the parsed flags into the typed training config.
import { readFileSync } from 'node:fs';
import { DEVICE_FLAG_HELP } from '../util/device_flag.js';
import { PRESET_NAMES } from './presets.js';
import { didYouMean, FlagError, flagsHelp, parseFlags, type FlagSpec, type FlagValues } from '../util/flags.js';

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
  hub_model_id: { type: 'string', default: null, help: 'Hub upload target (refused: train does not upload; run diffusion-dpo upload on the finished output_dir).', unsupported: 'train does not upload to the Hub; after the run, diffusion-dpo upload --repo_id ORG/NAME OUTPUT_DIR uploads the result with a model card' },
  mixed_precision: { type: 'string', default: 'fp16', help: 'no, fp16 (grad scaler; CUDA only) or bf16: the trained UNet\'s forward runs under autocast, the frozen models in that dtype. The fp16 default becomes no on a CPU run (said at start); fp16 asked for on a CPU is refused.', choices: ['no', 'fp16', 'bf16'] },
  local_rank: { type: 'int', default: -1, min: -1, help: 'The CUDA device index of this process (LOCAL_RANK overrides it, as train.py). Refused on a CPU run unless -1 or 0.' },
  checkpointing_steps: { type: 'int', default: 500, min: 1, help: 'Save the full training state every N updates.' },
  checkpoints_total_limit: { type: 'int', default: null, min: 1, help: 'Keep at most N checkpoints.' },
  sync_checkpoint_saves: { type: 'boolean', default: false, help: 'Write checkpoints with training paused. Default: the weights and optimizer state are copied to host memory and written in the background (one copy at most: about 12 bytes per UNet parameter with AdamW).' },
  resume_from_checkpoint: { type: 'string', default: 'latest', help: '"latest", a checkpoint folder, or "none".' },
  hard_skip_resume: { type: 'boolean', default: false, help: 'On resume, start the interrupted epoch\'s data from its beginning (train.py\'s flag, which skips its slow data replay); without it the run continues at the exact next batch.' },
  noise_offset: { type: 'float', default: 0, min: 0, help: 'Noise offset scale.' },
  input_perturbation: { type: 'float', default: 0, min: 0, help: 'Input perturbation scale.' },
  proportion_empty_prompts: { type: 'float', default: 0.2, min: 0, max: 1, help: 'Probability of training on an empty caption.' },
  sdxl: { type: 'boolean', default: false, help: 'SDXL (forces Adafactor and gradient checkpointing, as the reference).' },
  sft: { type: 'boolean', default: false, help: 'Supervised fine-tuning on the preferred images instead of DPO.' },
  beta_dpo: { type: 'float', default: 5000, min: 0, help: 'DPO temperature beta (also the beta of --loss_type hinge, ipo and kto; kto\'s default is Diffusion-KTO\'s 1000).' },
  loss_type: { type: 'string', default: 'sigmoid', help: 'The objective: sigmoid (Diffusion-DPO), hinge, ipo, mapo (reference-free: no reference UNet is loaded), kto (Diffusion-KTO: per-image like/dislike, from pairs or from single images with a label column) or sft (as --sft). docs/training.md#objectives gives each formula and source.', choices: ['sigmoid', 'hinge', 'ipo', 'mapo', 'kto', 'sft'] },
  kto_lambda_desirable: { type: 'float', default: 1, min: 0, help: '--loss_type kto: the weight of desirable images (Diffusion-KTO\'s lambda_d).' },
  kto_lambda_undesirable: { type: 'float', default: 1, min: 0, help: '--loss_type kto: the weight of undesirable images (Diffusion-KTO\'s lambda_u).' },
  beta_mapo: { type: 'float', default: 0.1, min: 0, help: '--loss_type mapo: the weight of its margin term (MaPO\'s beta_mapo).' },
  mapo_snr_value: { type: 'float', default: 0.5, min: 0, help: '--loss_type mapo: c in its score c*m/(exp(c*m) - 1) of a per-sample MSE m (MaPO\'s snr_value).' },
  noising: { type: 'string', default: 'forward', choices: ['forward', 'ddim_inversion'], help: 'How x_t is made from the image latents: forward (fresh Gaussian noise, train.py) or ddim_inversion (DDIM inversion of x0 to t with a frozen model, no grad, as InPO; the target is the noise it implies).' },
  inversion_steps: { type: 'int', default: 10, min: 1, help: '--noising ddim_inversion: model calls per inversion (InPO: 10).' },
  inversion_eta: { type: 'float', default: 0, min: 0, help: '--noising ddim_inversion: noise added per inversion step, times the DDPM posterior deviation (InPO\'s train.py: 0.1; 0 is a deterministic inversion).' },
  inversion_model: { type: 'string', default: 'reference', choices: ['reference', 'trained'], help: '--noising ddim_inversion: the model that inverts: the frozen reference (default) or the UNet being trained (InPO\'s train.py).' },
  lora_rank: { type: 'int', default: null, min: 1, help: 'Train LoRA adapters of this rank instead of the whole UNet: the base UNet is frozen in the weight dtype, only the adapters are optimized and checkpointed, and the reference prediction is the same UNet with its adapters off (no second UNet). The result is <output_dir>/pytorch_lora_weights.safetensors (diffusers\' load_lora_weights reads it).' },
  lora_alpha: { type: 'float', default: null, min: 0, help: 'LoRA alpha: the adapters\' output is scaled by alpha / rank (default: the rank, a scale of 1).' },
  lora_dropout: { type: 'float', default: 0, min: 0, max: 1, help: 'Dropout on the adapters\' input while training (peft\'s lora_dropout).' },
  lora_target_modules: { type: 'string', default: 'to_q,to_k,to_v,to_out.0', help: 'Comma-separated layers that get adapters: a name matches a Linear or Conv2d whose path is it or ends with "." + it; "*" matches anything (e.g. add ff.net.0.proj,ff.net.2 for the feed-forwards, conv1,conv2 for the resnets).' },
  lora_init: { type: 'string', default: null, help: 'Start the adapters from a LoRA file or folder (ours, diffusers\' or kohya\'s, UNet layers only): its ranks, alphas and layers are used; the reference is still the base UNet. Implies LoRA training.' },
  timestep_mode: { type: 'string', default: null, help: 'default, refiner (t % 200) or turbo (250 (t % 4) + 249 with a zero-terminal-SNR schedule). Unset: guessed from the model name as train.py does, and said at start.', choices: ['default', 'refiner', 'turbo'] },
  ddp_bucket_mb: { type: 'float', default: 25, min: 0.001, help: 'Multi-process runs: gradients are averaged in buckets of about this many MB (DDP\'s bucket_cap_mb).' },
  ddp_timeout: { type: 'int', default: 1800, min: 1, help: 'Multi-process runs: seconds a rank waits for the others (rendezvous, each collective) before the job fails, naming the rank.' },
  sample_seeds: { type: 'boolean', default: false, help: 'Draw each pair\'s latent sample, noise and timestep from its own generator, seeded by (seed, epoch, row), instead of the default generator over the whole batch: the run then does not depend on how batches are split across processes or accumulation steps (2 processes x batch b equal 1 x 2b). Default: train.py\'s draws.' },
  offload_frozen: { type: 'boolean', default: false, help: 'Keep the VAE, text encoders and reference UNet in host memory and move each to the device only for its call (train.py\'s SDXL behaviour); default: resident on the device.' },
  device: { type: 'string', default: 'auto', help: DEVICE_FLAG_HELP },
  deterministic: { type: 'boolean', default: false, help: 'Deterministic kernels where libtorch has them (torch.use_deterministic_algorithms with warn_only, cuDNN deterministic, the cuBLAS workspace setting): closer to repeatable runs on a GPU, somewhat slower; ops without a deterministic CUDA kernel warn. Without it cuDNN benchmarks its convolution algorithms on CUDA.' },
  channels_last: { type: 'boolean', default: false, help: 'Keep the UNets\' and the VAE\'s convolution weights channels-last (NHWC), for cuDNN\'s NHWC kernels on GPUs.' },
  sdpa_backend: { type: 'string', default: 'auto', choices: ['auto', 'flash', 'efficient', 'math', 'cudnn'], help: 'The only attention kernel scaled_dot_product_attention may use (auto: libtorch picks among all).' },
  max_bad_fraction: { type: 'float', default: 0.05, min: 0, max: 1, help: 'Stop (after a checkpoint) when more than this share of the rows read are unusable (judged from 100 rows on); each bad row is listed in <output_dir>/bad_rows.jsonl.' },
  latent_cache: { type: 'string', default: null, help: 'Train from a latent cache made by `diffusion-dpo cache` (VAE posteriors and text conditioning of every row): the VAE and text encoders are not loaded and no image is decoded. Refused if the cache was made with other encoders, resolution, dtype or data, or without flips for a run that flips; --random_crop cannot use one.' },
  exclude_rows: { type: 'string', default: null, help: 'A file of row ids to leave out (one per line, or bad_rows.jsonl; data --verify --write_exclude writes one).' },
  choice_model: { type: 'string', default: '', help: 'AI feedback: the preferred image of each pair is the one this scorer rates higher (pickscore, hpsv2, hpsv2.1, clip, aesthetics, demo_oracle; equal scores are ties, removed). The pairs are scored before training into --choice_labels (default <output_dir>/choice_labels.<scorer>.jsonl; resumable, reused by a resumed run), then trained at any batch size. docs/scoring.md#ai-feedback.' },
  choice_labels: { type: 'string', default: null, help: 'AI feedback labels made by diffusion-dpo relabel (or by an earlier --choice_model run): train on them instead of the dataset\'s labels.' },
  choice_model_path: { type: 'string', default: null, help: '--choice_model: the scorer\'s model (a Hub id, folder or file) instead of the reference\'s.' },
  choice_processor: { type: 'string', default: null, help: '--choice_model: where its tokenizer and preprocessor come from, when not beside the model.' },
  config: { type: 'string', default: null, help: 'A JSON file of flags (command-line flags override it).' },
  preset: { type: 'string', default: null, choices: PRESET_NAMES, help: 'A published recipe: sd15-paper, sdxl-paper (Diffusion-DPO\'s launch scripts), sd15-lora, sdxl-lora (diffusers\' DPO LoRA examples), sd15-mapo (MaPO\'s command). Sets the flags you did not give (learning rate and scaling, warm-up, steps, beta, precision, ...) and reaches the recipe\'s effective batch through gradient accumulation for the processes at hand; prints every value it sets. docs/training.md#presets.' },
} as const satisfies Record<string, FlagSpec>;

export type FlagName = keyof typeof FLAGS;
export type TrainFlags = FlagValues<typeof FLAGS>;

/** The flags' values (defaults filled in) and which of them the user set, on the command line or in --config. */
export type ParsedTrainArgs = TrainFlags & { readonly given: ReadonlySet<FlagName> };

export { FlagError as ArgsError };

/** Parses train.py-style argv (`--name value`, `--name=value`, dashes or underscores), over a --config file. */
export function parseTrainArgs(argv: string[]): ParsedTrainArgs {
  // the config file's name comes from the command line; its flags sit under those of the command line
  const configAt = argv.findIndex((a) => /^--config(=|$)/.test(a));
  const configFile = configAt < 0 ? null : argv[configAt]!.includes('=') ? argv[configAt]!.slice(argv[configAt]!.indexOf('=') + 1) : argv[configAt + 1];
  let fromFile: Record<string, unknown> = {};
  if (configFile) {
    try {
      fromFile = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new FlagError(`--config ${configFile}: ${(e as Error).message}`);
    }
    for (const k of Object.keys(fromFile)) {
      const name = k.replace(/-/g, '_');
      if (!(name in FLAGS)) {
        const near = didYouMean(name, Object.keys(FLAGS));
        throw new FlagError(`--config ${configFile}: unknown flag '${k}'${near ? `; did you mean ${near}?` : ''}`);
      }
    }
  }
  const { values, given } = parseFlags(FLAGS, argv, { extra: fromFile, float32: true });
  const args = values as TrainFlags;
  if (!args.pretrained_model_name_or_path) throw new FlagError('--pretrained_model_name_or_path is required');
  if (!args.dataset_name && !args.train_data_dir) throw new FlagError('give --dataset_name (or --train_data_dir for SFT image folders)');
  return Object.assign(args, { given: given as ReadonlySet<FlagName> });
}

export function trainHelp(): string {
  return ['usage: diffusion-dpo train --pretrained_model_name_or_path M --dataset_name D [flags]', '',
    'The flags of the reference train.py (each also with dashes: --beta-dpo), with its defaults, and ours:', '',
    flagsHelp(FLAGS, { width: 44 })].join('\n');
}
