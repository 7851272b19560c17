// The training recipe: setup (models, data, optimizer, schedule, resume) -> one state object ->
// fit (the update loop) -> save (the final pipeline). What a run does is decided by its config
// (config.ts) before setup starts; the update function (update.ts) owns forward, backward,
// accumulation and the optimizer step; checkpoints (checkpoint.ts) hold everything the state
// holds that a resumed run needs to continue bit-identically.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as torch from '../torch/index.js';
import { PreferenceDataset, readRowIds } from '../data/dataset.js';
import { PairLoader } from '../data/loader.js';
import { resolveDataset, resolveModel } from '../hub/index.js';
import {
  attachLora, checkImageSide, writeFileAtomic, checkUNetFits, disposeLoraFile, disposePipeline, loadPipeline, loadUNet, readLoraFile, readPipelineShape, savePipeline, savePipelineWithUNet,
  type PipelineComponents, type UNet2DConditionModel,
} from '../models/index.js';
import { cacheSettings, datasetIdentity } from '../cache/identity.js';
import { LatentCache } from '../cache/reader.js';
import { loadNoiseScheduleConfig, NoiseSchedule } from '../schedulers/noise_schedule.js';
import { CLIPTokenizer } from '../tokenizers/clip.js';
import {
  checkpointDirs, generatorStates, loadCheckpointWeights, nonFiniteTensors, readTrainerState, saveCheckpoint, setGeneratorStates, signatureChanges,
  snapshotCheckpoint, writeCheckpoint, type RankState, type RunSignature, type TrainedWeights, type TrainerState,
} from './checkpoint.js';
import { DataParallel } from './data_parallel.js';
import { BadDataError, BadRowLog } from './bad_rows.js';
import type { LoraConfig, TrainConfig } from './config.js';
import { saveLoraWeights, trainedLora, trainedUNet } from './trained_weights.js';
import { MetricsLog } from './metrics.js';
import { OffloadPlacement, residentPlacement, type FrozenPlacement } from './placement.js';
import { createDiffusionStep, type DiffusionModels, type DiffusionStep } from './step.js';
import { ResourceMonitor, type ResourceSummary } from './telemetry.js';
import { NonFiniteLossError, runUpdate } from './update.js';
import { needsReference } from './objectives.js';
import { missingChoiceLabels, readChoiceLabels, type ChoiceLabels } from '../data/choice_labels.js';
import { loadScorer } from '../scoring/load.js';
import { relabelDataset } from '../scoring/relabel.js';
import { describeSpike, LossSpikeDetector } from './loss_spikes.js';
import { UserError } from '../util/errors.js';

export interface TrainEvents {
  /** A line for the user (setup facts, decisions, warnings). */
  info(msg: string): void;
  /** After each update. */
  update(p: { step: number; total: number; loss: number; lr: number; implicitAcc: number | null; pairsPerSecond: number; badRows: number }): void;
}

export interface TrainResult {
  globalStep: number;
  history: Record<string, number>[];
  outputDir: string;
  stoppedBy: 'done' | 'signal';
  resources: ResourceSummary;
}

/** Everything a run holds; a checkpoint is this minus what setup rebuilds from the config. */
export interface TrainState {
  readonly config: TrainConfig;
  readonly paths: ModelPaths;
  /** The trained UNet (with LoRA: the frozen base the adapters sit on). */
  readonly unet: UNet2DConditionModel;
  /** LoRA training: the adapters (the trained parameters); null when the whole UNet is trained. */
  readonly adapters: torch.nn.LoraAdapters | null;
  /** What the optimizer updates and checkpoints hold: the UNet, or the adapters. */
  readonly trained: TrainedWeights;
  /** The loaded pipeline; null when training from a latent cache (its VAE and text encoders are not loaded). */
  readonly pipeline: PipelineComponents | null;
  readonly models: DiffusionModels;
  readonly placement: FrozenPlacement;
  readonly step: DiffusionStep;
  /** The trained parameters (the UNet's, or the adapters'). */
  readonly params: torch.Tensor[];
  readonly optimizer: torch.optim.Optimizer<{ lr: number }>;
  readonly schedule: torch.optim.LRScheduler;
  readonly scaler: torch.GradScaler | null;
  readonly dataset: PreferenceDataset;
  readonly loader: PairLoader;
  /** The run's logs and report: rank 0's alone. */
  readonly metrics: MetricsLog | null;
  /** Multi-process training (WORLD_SIZE > 1); null for one process. */
  readonly dp: DataParallel | null;
  readonly monitor: ResourceMonitor;
  readonly badRows: BadRowLog;
  readonly signature: RunSignature;
  readonly plan: { maxSteps: number; maxEpochs: number; updatesPerEpoch: number };
  progress: { globalStep: number; history: Record<string, number>[] };
  /** Reports updates whose loss jumps far above the recent ones. */
  readonly spikes: LossSpikeDetector;
  /** The checkpoint being written in the background (one at a time), and a write that failed. */
  saves: { pending: Promise<string> | null; failed: Error | null; count: number };
}

function mb(n: number): string {
  return `${n.toFixed(0)} MB`;
}

/** The checkpoint to resume from, if any: 'latest' finds none in a fresh output folder. */
function findResume(config: TrainConfig): string | null {
  const r = config.output.resume;
  if (r === null) return null;
  if (r === 'latest') return checkpointDirs(config.output.dir).pop()?.path ?? null;
  if (!existsSync(join(r, 'trainer_state.json'))) throw new UserError(`--resume_from_checkpoint ${r}: no such checkpoint (no trainer_state.json there)`);
  return r;
}

export interface ModelPaths {
  modelPath: string;
  /** The folder whose unet/ the trained and the reference UNet start from (--unet_init, else the pipeline). */
  unetSource: string;
  vaeFolder: string | undefined;
}

/** Finds the model folders and checks, from their configs alone, that the run can use them: before any output exists. */
export async function resolveAndCheckModels(config: Pick<TrainConfig, 'model' | 'data'>): Promise<ModelPaths> {
  const { model } = config;
  const cacheDir = model.cacheDir ?? undefined;
  const modelPath = await resolveModel(model.name, { revision: model.revision ?? undefined, cacheDir });
  const unetSource = model.unetInit ? await resolveModel(model.unetInit, { cacheDir }) : modelPath;
  const vaeFolder = model.vae ? await resolveModel(model.vae, { cacheDir }) : undefined;
  const shape = readPipelineShape(modelPath, { vaeFolder });
  if (model.sdxl !== (shape.kind === 'sdxl')) {
    throw new UserError(`${modelPath} is a${shape.kind === 'sdxl' ? 'n SDXL' : ' Stable Diffusion 1.x/2.x'} pipeline: ${model.sdxl ? 'drop' : 'add'} --sdxl`);
  }
  const unet = model.unetInit ? checkUNetFits(shape, join(unetSource, 'unet')) : shape.unet;
  checkImageSide(shape, '--resolution', config.data.resolution, unet);
  return { modelPath, unetSource, vaeFolder };
}

interface LoadedModels {
  unet: UNet2DConditionModel;
  adapters: torch.nn.LoraAdapters | null;
  pipeline: PipelineComponents | null;
  models: DiffusionModels;
  placement: FrozenPlacement;
}

async function loadModels(config: TrainConfig, paths: ModelPaths, events: TrainEvents): Promise<LoadedModels> {
  const { model, device, precision, memory } = config;
  const { modelPath, unetSource, vaeFolder } = paths;
  const cached = config.data.latentCache !== null;
  // from a latent cache the VAE and text encoders are never needed: only the UNets are loaded
  const pipeline = cached ? null : loadPipeline(modelPath, { device: 'cpu', unetFolder: join(unetSource, 'unet'), vaeFolder });
  const unet = pipeline?.unet ?? loadUNet(join(unetSource, 'unet'), { device: 'cpu' });
  // a reference-free objective (MaPO) loads no reference UNet, nor does LoRA training (its reference
  // is the same UNet with the adapters off): one UNet in memory
  const { method, lossType } = config.objective;
  const refUnet = method === 'dpo' && needsReference(lossType) && !config.lora ? loadUNet(join(unetSource, 'unet'), { device: 'cpu', dtype: precision.weightDtype }) : null;
  // a trained UNet stays float32 (mixed precision autocasts its forward); the frozen models, and
  // the base UNet under LoRA adapters, run in the weight dtype
  let adapters: torch.nn.LoraAdapters | null = null;
  if (config.lora) {
    unet.to({ dtype: precision.weightDtype, device }).requiresGrad_(false).train();
    adapters = makeAdapters(config.lora, unet, device);
  } else {
    unet.to(device).train();
  }
  if (memory.gradientCheckpointing) unet.enableGradientCheckpointing();
  const frozen = [pipeline?.vae, pipeline?.textEncoder, pipeline?.textEncoder2, refUnet].filter((m): m is NonNullable<typeof m> => !!m);
  for (const m of frozen) m.to(precision.weightDtype).requiresGrad_(false).eval();
  if (memory.channelsLast) for (const m of [unet, ...frozen]) m.toMemoryFormat('channelsLast');
  let placement: FrozenPlacement = residentPlacement;
  if (memory.offloadFrozen) {
    const offload = new OffloadPlacement(device);
    for (const m of frozen) offload.place(m);
    placement = offload;
  } else {
    for (const m of frozen) m.to(device);
  }
  const noise = new NoiseSchedule(loadNoiseScheduleConfig(join(modelPath, 'scheduler')));
  if (model.timestepMode === 'turbo') noise.enforceZeroTerminalSnr();
  const tokenizer = !cached && existsSync(join(modelPath, 'tokenizer')) ? CLIPTokenizer.fromFolder(join(modelPath, 'tokenizer')) : null;
  const tokenizer2 = !cached && existsSync(join(modelPath, 'tokenizer_2')) ? CLIPTokenizer.fromFolder(join(modelPath, 'tokenizer_2')) : null;
  const kind = model.sdxl ? 'sdxl' : 'sd';
  const models: DiffusionModels = {
    kind, unet, refUnet, adapters, vae: pipeline?.vae ?? null, textEncoder: pipeline?.textEncoder ?? null,
    textEncoder2: pipeline?.textEncoder2 ?? null, tokenizer, tokenizer2, noise,
  };
  events.info(`model: ${modelPath} (${kind === 'sdxl' ? 'SDXL' : 'SD'}, UNet ${(unet.numParameters() / 1e6).toFixed(1)} M parameters` +
    `${model.unetInit ? `, from ${unetSource}` : ''}); ${cached ? `VAE and text encoders not loaded (latent cache ${config.data.latentCache}); ` : ''}` +
    `frozen models ${placement.kind === 'offload' ? 'offloaded to host memory' : 'resident'} in ${precision.weightDtype}; ` +
    `gradient checkpointing ${memory.gradientCheckpointing ? 'on' : 'off'}`);
  if (adapters) {
    const withReference = method === 'dpo' && needsReference(lossType);
    events.info(`LoRA: ${adapters.size} adapters, ${(adapters.numParameters() / 1e6).toFixed(3)} M trained parameters (float32) on the frozen UNet (${precision.weightDtype})` +
      (withReference ? '; the reference prediction is the UNet with its adapters off' : ''));
  }
  return { unet, adapters, pipeline, models, placement };
}

/** The run's adapters: new ones (peft's initialisation) on the target layers, or those of --lora_init. */
function makeAdapters(lora: LoraConfig, unet: UNet2DConditionModel, device: torch.Device): torch.nn.LoraAdapters {
  let adapters: torch.nn.LoraAdapters;
  if (lora.init) {
    const file = readLoraFile(lora.init, { unet });
    try {
      adapters = attachLora(file, { dtype: 'float32', device, dropout: lora.dropout }).get('unet')!;
    } finally {
      disposeLoraFile(file);
    }
    if (!adapters?.size) throw new UserError(`--lora_init ${lora.init}: no adapter with non-zero weights`);
  } else {
    try {
      adapters = torch.nn.LoraAdapters.inject(unet, { rank: lora.rank!, alpha: lora.alpha ?? lora.rank!, dropout: lora.dropout, targets: lora.targets, dtype: 'float32', device });
    } catch (e) {
      throw new UserError(`--lora_target_modules: ${(e as Error).message}`, { cause: e });
    }
  }
  return adapters.train().requiresGrad_(true);
}

/**
 * The run's dataset with its filters (the rows a run, or a latent cache for it, takes), under
 * AI-feedback labels when the run asks for them: scored first with --choice_model (into the
 * sidecar, resumably), then checked to cover every row the run keeps under the human labels.
 */
export async function openPreferenceData(config: Pick<TrainConfig, 'data' | 'model' | 'objective' | 'device'>, seed: number, events?: TrainEvents): Promise<{ dataset: PreferenceDataset; sourcePath: string }> {
  const d = config.data;
  const sourcePath = await resolveDataset(d.source, { split: d.split, cacheDir: config.model.cacheDir ?? undefined });
  const options = {
    split: d.split, dreamlikePairsOnly: d.dreamlikePairsOnly, maxTrainSamples: d.maxTrainSamples ?? undefined, seed,
    method: config.objective.lossType === 'kto' && config.objective.method === 'dpo' ? 'kto' as const : config.objective.method, columns: { caption: d.captionColumn, image: d.imageColumn },
    excludeRows: d.excludeRows ? readRowIds(d.excludeRows) : undefined,
  };
  const human = await PreferenceDataset.open(sourcePath, options);
  const choice = d.choice.labels ? await choiceLabels(config, human, events) : null;
  const dataset = choice ? await PreferenceDataset.open(sourcePath, { ...options, choiceLabels: choice }) : human;
  return { dataset, sourcePath };
}

/** The run's AI-feedback labels: made (or completed) first when a scorer is named, then read and checked. */
async function choiceLabels(config: Pick<TrainConfig, 'data' | 'device'>, human: PreferenceDataset, events?: TrainEvents): Promise<ChoiceLabels> {
  const c = config.data.choice;
  const file = c.labels!;
  // a complete sidecar (a resumed run, or relabel run before) needs no scorer
  let choice = existsSync(file) ? readChoiceLabels(file) : null;
  if (c.scorer && (!choice || missingChoiceLabels(choice, human.indices).length > 0)) {
    const scorer = await loadScorer(c.scorer, { model: c.model ?? undefined, processor: c.processor ?? undefined, device: config.device, cacheDir: undefined });
    try {
      mkdirSync(dirname(file), { recursive: true });
      events?.info(`AI feedback: scoring the pairs with ${scorer.description} into ${file}`);
      const r = await relabelDataset({ dataset: human, scorer, file, datasetName: config.data.source, split: config.data.split, batchSize: 8 });
      events?.info(`AI feedback: ${r.scored} pairs scored now${r.resumed ? `, ${r.resumed} before` : ''}${r.errors ? `, ${r.errors} could not be` : ''}; ` +
        `the scorer flips ${r.flipped} of the human choices and ties ${r.ties}`);
    } finally {
      scorer.dispose();
    }
    choice = readChoiceLabels(file);
  }
  if (!choice) choice = readChoiceLabels(file);
  if (c.scorer && !choice.header.scorer.startsWith(`${c.scorer}:`)) throw new UserError(`--choice_labels ${file} holds labels of ${choice.header.scorer}, not of --choice_model ${c.scorer}`);
  const missing = missingChoiceLabels(choice, human.indices);
  if (missing.length) {
    throw new UserError(`--choice_labels ${file}: ${missing.length} of the run's ${human.length} pairs have no label (e.g. row ${missing[0]}): ` +
      `the relabelling is incomplete or was made for other rows; run diffusion-dpo relabel again with --output ${file} to finish it`);
  }
  events?.info(`AI feedback: labels of ${choice.header.scorer} from ${file}${choice.errors.size ? ` (${choice.errors.size} pairs could not be scored: left out)` : ''}`);
  return choice;
}

async function loadData(
  config: TrainConfig, paths: ModelPaths, models: DiffusionModels, seed: number, badRows: BadRowLog, resuming: boolean, events: TrainEvents,
): Promise<{ dataset: PreferenceDataset; loader: PairLoader; sourcePath: string; cache: LatentCache | null }> {
  const d = config.data;
  const { dataset, sourcePath } = await openPreferenceData(config, seed, events);
  const st = dataset.stats;
  events.info(`data: ${st.source}; ${st.rowsRead} rows read, eliminated ${st.tiesRemoved}/${st.rowsRead} split decisions, ` +
    `${st.excluded ? `${st.excluded} excluded (--exclude_rows), ` : ''}${st.badRows.length ? `${st.badRows.length} unusable, ` : ''}${st.kept} kept`);
  // rows unusable from their labels alone are known now; a resumed run logged them when it started
  // (rank 0 lists them: every rank reads the same labels)
  if (!resuming && config.batch.rank === 0) for (const b of st.badRows) badRows.record(b);
  badRows.check(st.badRows.length, st.rowsRead, 'rows of the dataset', true);
  if (st.kept === 0) throw new BadDataError(`${st.source}: no usable row (${st.rowsRead} read; ${JSON.stringify(st.bad)})`);
  const tokenizer = models.tokenizer;
  const cache = d.latentCache ? await openLatentCache(config, paths, dataset, sourcePath, seed, events) : null;
  const loader = new PairLoader(dataset, {
    batchSize: config.batch.perDevice, resolution: d.resolution, seed, randomCrop: d.randomCrop, hflip: d.hflip,
    proportionEmptyPrompts: d.proportionEmptyPrompts, numWorkers: d.numWorkers, rank: config.batch.rank, worldSize: config.batch.worldSize,
    // SD tokenizes in the loader; SDXL passes raw captions to the step, as train.py
    tokenize: models.kind === 'sd' && tokenizer ? (caps) => tokenizer.encodeBatch(caps).map((e) => e.inputIds) : null,
    onBadRow: (b) => badRows.record(b),
    samples: cache?.samples({ seed, hflip: d.hflip, proportionEmptyPrompts: d.proportionEmptyPrompts, method: config.objective.method }) ?? null,
  });
  return { dataset, loader, sourcePath, cache };
}

/** The run's latent cache, checked against the run: encoders, resolution, dtype, flips and rows. */
async function openLatentCache(config: TrainConfig, paths: ModelPaths, dataset: PreferenceDataset, sourcePath: string, seed: number, events: TrainEvents): Promise<LatentCache> {
  const d = config.data;
  const cache = LatentCache.open(d.latentCache!);
  const run = await cacheSettings({
    modelPath: paths.modelPath, vaeFolder: paths.vaeFolder, kind: config.model.sdxl ? 'sdxl' : 'sd', resolution: d.resolution, hflip: d.hflip,
    weightDtype: config.precision.weightDtype, pairs: dataset.source.pairs,
    dataset: datasetIdentity(sourcePath, d.split, dataset.stats, { dreamlikePairsOnly: d.dreamlikePairsOnly, maxTrainSamples: d.maxTrainSamples, seed }),
  });
  const problems = cache.mismatches(run, dataset.indices);
  if (problems.length) throw new UserError(`--latent_cache ${d.latentCache}: the cache does not fit this run (${problems.join('; ')}); make one for it with diffusion-dpo cache`);
  const m = cache.manifest;
  events.info(`latent cache: ${d.latentCache} (${m.rows.length - m.bad.length} rows, ${m.settings.hflip === 'both' ? 'both views of every image' : 'unflipped views'}, ${m.settings.weight_dtype})`);
  return cache;
}

function makeOptimizer(config: TrainConfig, params: torch.Tensor[]): torch.optim.Optimizer<{ lr: number }> {
  const o = config.optimizer;
  const lr = config.schedule.learningRate;
  if (o.kind === 'adafactor') {
    // train.py: Adafactor(lr, weight_decay, clip_threshold=1.0, scale_parameter=False, relative_step=False)
    return new torch.optim.Adafactor(params, { lr, weightDecay: o.weightDecay, clipThreshold: 1.0, scaleParameter: false, relativeStep: false });
  }
  return new torch.optim.AdamW(params, { lr, betas: o.betas, weightDecay: o.weightDecay, eps: o.eps, fused: torch.deviceType(config.device) === 'cuda' });
}

/** Builds the state: models, data, optimizer and schedule, then the checkpoint's state when resuming. */
export async function setup(config: TrainConfig, events: TrainEvents): Promise<TrainState> {
  for (const n of config.notes) events.info(n);
  const { device } = config;
  const monitor = new ResourceMonitor(device);
  events.info(`device: ${torch.describeDevice(device)}`);
  if (config.precision.allowTf32) torch.setAllowTF32(true);
  if (config.precision.deterministic) torch.useDeterministicAlgorithms(true);
  // a training step's shapes never change: let cuDNN pick its fastest convolutions once
  else if (torch.deviceType(device) === 'cuda') torch.setCudnnBenchmark(true);
  const sdpa = config.precision.sdpaBackend;
  if (sdpa !== 'auto') torch.sdpBackends(Object.fromEntries(torch.SDP_BACKENDS.map((b) => [b, b === sdpa])));
  const paths = await resolveAndCheckModels(config);
  const dp = await startDataParallel(config, events);
  try {
    return await buildState(config, paths, dp, monitor, events);
  } catch (e) {
    dp?.destroy({ failed: true });
    throw e;
  }
}

async function startDataParallel(config: TrainConfig, events: TrainEvents): Promise<DataParallel | null> {
  const { layout, timeoutMs, bucketBytes } = config.distributed;
  if (layout.worldSize === 1) return null;
  const t0 = performance.now();
  const dp = await DataParallel.start(layout, config.device, { timeoutMs, bucketBytes });
  events.info(`processes: ${layout.worldSize} (${layout.source === 'slurm' ? 'SLURM' : 'torchrun variables'}; rank ${layout.rank}, local rank ${layout.localRank}), ` +
    `rendezvous at ${layout.masterAddr}:${layout.masterPort} in ${((performance.now() - t0) / 1000).toFixed(1)} s; gradients over ${dp.grads.backend}, ` +
    `buckets of ${(bucketBytes / 2 ** 20).toFixed(0)} MB; timeout ${timeoutMs / 1000} s`);
  return dp;
}

/** The checkpoint to resume from, as rank 0 sees it: every rank must find the same one. */
async function agreedResume(config: TrainConfig, dp: DataParallel | null): Promise<string | null> {
  if (!dp) return findResume(config);
  const path = (await dp.shareFromRankZero('resume', dp.rank === 0 ? findResume(config) ?? '' : null)) || null;
  if (path && !existsSync(join(path, 'trainer_state.json'))) {
    throw new UserError(`rank ${dp.rank}: rank 0 resumes from ${path}, which this process cannot read: a multi-node run needs --output_dir on a filesystem every node shares`);
  }
  return path;
}

async function buildState(config: TrainConfig, paths: ModelPaths, dp: DataParallel | null, monitor: ResourceMonitor, events: TrainEvents): Promise<TrainState> {
  const { device } = config;
  const rank = config.batch.rank;
  mkdirSync(config.output.dir, { recursive: true });

  // the checkpoint's seed continues a run started without --seed; every rank takes rank 0's
  const resumePath = await agreedResume(config, dp);
  const saved = resumePath ? readTrainerState(resumePath) : null;
  let seed = config.seed ?? saved?.signature?.seed ?? Math.floor(Math.random() * 2 ** 31);
  if (dp) seed = Number(await dp.shareFromRankZero('seed', String(seed)));
  torch.manualSeed(seed + rank); // train.py: set_seed(seed + process index)

  const { unet, adapters, pipeline, models, placement } = await loadModels(config, paths, events);
  const trained = adapters ? trainedLora(adapters, { base_model: config.model.unetInit ?? config.model.name, dropout: config.lora!.dropout }) : trainedUNet(unet);
  // each process lists the bad rows of its own shard
  const badRowsFile = join(config.output.dir, rank === 0 ? 'bad_rows.jsonl' : `bad_rows.rank-${rank}.jsonl`);
  if (!resumePath) rmSync(badRowsFile, { force: true });
  const badRows = new BadRowLog(badRowsFile, config.data.maxBadFraction);
  const { dataset, loader, sourcePath, cache } = await loadData(config, paths, models, seed, badRows, resumePath !== null, events);
  const updatesPerEpoch = Math.ceil(loader.stepsPerEpoch / config.batch.accumulation);
  if (updatesPerEpoch === 0) throw new UserError(`the dataset has ${dataset.length} usable rows: fewer than one batch of ${config.batch.perDevice}`);
  const maxSteps = config.schedule.maxTrainSteps ?? config.schedule.numTrainEpochs * updatesPerEpoch;
  const plan = { maxSteps, maxEpochs: Math.ceil(maxSteps / updatesPerEpoch), updatesPerEpoch };
  const { batch, schedule: sc } = config;
  events.info(`plan: ${maxSteps} updates of ${batch.perDevice} x ${batch.accumulation} x ${batch.worldSize} = ${batch.perDevice * batch.accumulation * batch.worldSize} ` +
    `${dataset.imagesPerSample === 2 ? 'pairs' : 'images'} (${plan.maxEpochs} epoch(s) of ${updatesPerEpoch}); lr ${sc.learningRate.toExponential(2)} ${sc.lrScheduler}; ` +
    `${config.optimizer.kind === 'adamw' ? 'AdamW' : 'Adafactor'}${config.clipGradNorm === null ? ', no clipping' : `, clip ${config.clipGradNorm}`}; mixed precision ${config.precision.mixed}`);

  const params = trained.params;
  const optimizer = makeOptimizer(config, params);
  const w = batch.worldSize;
  const schedule = torch.optim.getScheduler(sc.lrScheduler, optimizer, { numWarmupSteps: sc.warmupSteps * w, numTrainingSteps: maxSteps * w });
  const scaler = config.precision.mixed === 'fp16' ? new torch.GradScaler(device) : null;
  const signature: RunSignature = {
    train_batch_size: batch.perDevice, gradient_accumulation_steps: batch.accumulation, world_size: w, method: config.objective.method,
    loss_type: config.objective.lossType, noising: config.objective.noising, lora: config.lora && { rank: config.lora.rank, alpha: config.lora.alpha, targets: config.lora.targets, init: config.lora.init },
    resolution: config.data.resolution, seed, learning_rate: sc.learningRate, lr_scheduler: sc.lrScheduler, lr_warmup_steps: sc.warmupSteps,
    optimizer: config.optimizer.kind,
    dataset: {
      source: sourcePath, split: config.data.split, rows_read: dataset.stats.rowsRead, kept: dataset.stats.kept,
      max_train_samples: config.data.maxTrainSamples, dreamlike_pairs_only: config.data.dreamlikePairsOnly,
      choice_labels: config.data.choice.labels,
    },
  };
  const step = createDiffusionStep(models, {
    method: config.objective.method, betaDpo: config.objective.betaDpo, lossType: config.objective.lossType,
    betaMapo: config.objective.betaMapo, mapoSnrValue: config.objective.mapoSnrValue,
    ktoLambdaDesirable: config.objective.ktoLambdaDesirable, ktoLambdaUndesirable: config.objective.ktoLambdaUndesirable, noising: config.objective.noising, noiseOffset: config.objective.noiseOffset,
    inputPerturbation: config.objective.inputPerturbation, timestepMode: config.model.timestepMode, resolution: config.data.resolution,
    weightDtype: config.precision.weightDtype, placement,
    autocast: config.precision.mixed === 'no' ? null : { device, dtype: config.precision.weightDtype },
    latentScalingFactor: cache?.manifest.vae.scaling_factor, latentMomentsFormat: cache?.manifest.vae.moments_memory_format,
  });
  const state: TrainState = {
    config, paths, unet, adapters, trained, pipeline, models, placement, step, params, optimizer, schedule, scaler, dataset, loader, monitor, badRows, signature, plan,
    metrics: rank === 0 ? new MetricsLog(config.output.logDir, config.output.reportTo === 'tensorboard', join(config.output.dir, 'report.html')) : null,
    dp, spikes: new LossSpikeDetector(),
    progress: { globalStep: 0, history: [] },
    saves: { pending: null, failed: null, count: 0 },
  };
  if (resumePath && saved) restore(state, resumePath, saved, events);
  // every process starts from rank 0's weights and buffers (DDP's constructor broadcasts them)
  if (dp) await dp.broadcastFromRankZero([...params, ...unet.buffers()]);
  const mem = monitor.deviceMemoryMb();
  events.info(`memory after setup: host RSS ${mb(process.memoryUsage().rss / 2 ** 20)}` +
    (mem ? `; ${device} ${mb(mem.allocated)} allocated, ${mb(mem.reserved)} reserved` : ''));
  return state;
}

function restore(s: TrainState, path: string, saved: ReturnType<typeof readTrainerState>, events: TrainEvents): void {
  if (saved.signature) {
    const changes = signatureChanges(saved.signature, s.signature);
    if (changes.length) {
      throw new UserError(`cannot resume from ${path}: the run's settings changed (${changes.join('; ')}). ` +
        'A resumed run must see the same batches in the same order: restore those settings, or start a new run in another --output_dir (or with --resume_from_checkpoint none)');
    }
  } else {
    events.info(`${path} predates run signatures: its batch size, accumulation and dataset are not checked against this run's`);
  }
  const st = saved.state;
  loadCheckpointWeights(path, s.trained, s.optimizer);
  s.schedule.loadStateDict(st.scheduler as { name: torch.optim.ScheduleName; lastEpoch: number });
  if (st.scaler && s.scaler) s.scaler.loadStateDict(st.scaler);
  // --hard_skip_resume (train.py) restarts the interrupted epoch's data instead of continuing it
  // a multi-process checkpoint holds each rank's data position and generators
  const mine = st.ranks ? st.ranks[s.config.batch.rank] : { loader: st.loader, generators: st.generators };
  if (!mine) throw new UserError(`cannot resume from ${path}: it holds no state for rank ${s.config.batch.rank}`);
  s.loader.setState(s.config.output.hardSkipResume ? { epoch: mine.loader.epoch, cursor: 0, step: 0 } : mine.loader);
  const missing = setGeneratorStates(mine.generators);
  if (missing.length) events.info(`the random state of ${missing.join(', ')} was not restored (no such device here): the resumed run's noise differs from an uninterrupted one's`);
  s.progress = { globalStep: st.globalStep, history: st.history };
  events.info(`resumed from ${path} at step ${st.globalStep}${s.config.output.hardSkipResume ? ' (--hard_skip_resume: the epoch\'s data starts over)' : ''}`);
}

function rankState(s: TrainState): RankState {
  return { loader: s.loader.state(), generators: generatorStates() };
}

function checkpointState(s: TrainState, ranks: RankState[] | null): TrainerState {
  const own = rankState(s);
  return {
    version: 2, globalStep: s.progress.globalStep, loader: own.loader,
    scheduler: { name: s.schedule.name, lastEpoch: s.schedule.lastEpoch }, scaler: s.scaler?.stateDict() ?? null,
    generators: own.generators, run: s.signature, history: s.progress.history, ...(ranks ? { ranks } : {}),
  };
}

/**
 * Saves a checkpoint of the state. By default the state is copied to host memory (training waits
 * only for that copy) and written in the background; `wait` returns once it is on disk, as do the
 * paths that stop the run. At most one save is in flight, which bounds the host memory it takes to
 * one copy of the weights and optimizer state; --sync_checkpoint_saves takes none.
 */
export async function saveState(s: TrainState, events: TrainEvents, o: { wait?: boolean } = {}): Promise<string> {
  const path = await saveOnRankZero(s, events, o);
  // with several processes, one that waits for the save waits for rank 0's write (a stopping job
  // must not exit, or be requeued, before the checkpoint is complete)
  if (s.dp && o.wait) await s.dp.barrier();
  return path;
}

async function saveOnRankZero(s: TrainState, events: TrainEvents, o: { wait?: boolean }): Promise<string> {
  await flushSaves(s);
  const { dir, checkpointsTotalLimit: keepLast, syncCheckpointSaves } = s.config.output;
  const step = s.progress.globalStep;
  // every rank's data position and generators, collected by rank 0, which alone writes
  const ranks = s.dp ? await s.dp.gatherStrings(`checkpoint/${s.saves.count++}`, JSON.stringify(rankState(s))) : null;
  if (s.dp && s.dp.rank !== 0) return checkpointPathOf(dir, step);
  const rankStates = ranks ? ranks.map((r) => JSON.parse(r) as RankState) : null;
  const t0 = performance.now();
  if (syncCheckpointSaves) {
    const path = saveCheckpoint(dir, step, s.trained, s.optimizer, checkpointState(s, rankStates), keepLast);
    events.info(`saved ${path} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    return path;
  }
  const snap = snapshotCheckpoint(step, s.trained, s.optimizer, checkpointState(s, rankStates));
  const copied = performance.now();
  const write = writeCheckpoint(dir, snap, keepLast).then((path) => {
    events.info(`saved ${path} (training waited ${((copied - t0) / 1000).toFixed(2)} s for the copy; written in ${((performance.now() - copied) / 1000).toFixed(1)} s)`);
    return path;
  });
  // a failed background write stops the run at its next update (fit checks), never unreported
  s.saves.pending = write.catch((e: Error) => {
    s.saves.failed = e;
    throw e;
  });
  s.saves.pending.catch(() => undefined);
  if (o.wait) return flushSaves(s).then(() => write);
  return checkpointPathOf(dir, step);
}

function checkpointPathOf(dir: string, step: number): string {
  return join(dir, `checkpoint-${step}`);
}

/** Waits for the checkpoint being written, if any; throws if its write failed. */
export async function flushSaves(s: TrainState): Promise<void> {
  const pending = s.saves.pending;
  s.saves.pending = null;
  if (pending) await pending;
  throwIfSaveFailed(s);
}

function throwIfSaveFailed(s: TrainState): void {
  const failed = s.saves.failed;
  if (failed) {
    s.saves.failed = null;
    throw failed;
  }
}

/**
 * After a non-finite loss nothing of the failed update was applied, so the weights should be the
 * last good state: saved only if they and the optimizer state are finite (a NaN that reached them
 * earlier must not be saved as "good").
 */
export async function saveLastGoodState(s: TrainState, events: TrainEvents): Promise<string> {
  await flushSaves(s);
  const bad = nonFiniteTensors([...s.trained.namedTensors(), ...s.optimizer.stateDict().tensors]);
  // with several processes rank 0 looks at the checkpoints (its own writes are complete) and every rank follows
  const lastSaved = () => checkpointDirs(s.config.output.dir).pop() ?? null;
  const earlier = s.dp ? await s.dp.decide(lastSaved) : lastSaved();
  if (bad.length) {
    return `the weights or optimizer state hold NaN or infinite values (${bad.slice(0, 3).join(', ')}${bad.length > 3 ? ', ...' : ''}), so no checkpoint was saved` +
      `${earlier ? `; the last saved one is ${earlier.path}` : ''}`;
  }
  if (s.progress.globalStep === 0 || earlier?.step === s.progress.globalStep) return earlier ? `the last good state is ${earlier.path}` : 'no update had completed: nothing was saved';
  return `the last good state is saved in ${await saveState(s, events, { wait: true })}`;
}

/** The update loop: until max steps, a signal (checkpoint, then stop) or a non-finite loss (stop with the last good state). */
export async function fit(s: TrainState, events: TrainEvents, signal?: AbortSignal): Promise<TrainResult['stoppedBy']> {
  const { maxSteps } = s.plan;
  const startStep = s.progress.globalStep;
  try {
    while (s.progress.globalStep < maxSteps) {
      throwIfSaveFailed(s);
      // every process stops at the same update, whichever of them got the signal first
      const stop = s.dp ? await s.dp.any(signal?.aborted ?? false) : signal?.aborted;
      if (stop) {
        if (s.progress.globalStep > startStep) await saveState(s, events, { wait: true });
        else events.info('stopped before the first update: nothing new to save');
        return 'signal';
      }
      const t0 = performance.now();
      const u = await runUpdate(s);
      if (!u) break; // epochs exhausted
      const step = ++s.progress.globalStep;
      const { pairs, dataWaitSeconds, rows, accByTimestep, ...logged } = u;
      const seconds = (performance.now() - t0) / 1000;
      // the job's throughput (every process's pairs); the share of the update spent averaging gradients
      const row: Record<string, number> = {
        step, ...logged, ...accByTimestep, bad_rows: s.badRows.total, ...s.monitor.window(pairs * s.config.batch.worldSize, seconds, dataWaitSeconds),
        ...(s.dp ? { comm_share: Math.min(1, s.dp.takeCommSeconds() / seconds) } : {}),
      };
      const spike = s.spikes.observe(step, u.train_loss, rows);
      if (spike) {
        row.loss_spike = 1;
        if (s.config.batch.rank === 0) events.info(describeSpike(spike, s.config.batch.worldSize));
      }
      s.progress.history.push(row);
      s.metrics?.log(step, row);
      events.update({ step, total: maxSteps, loss: u.train_loss, lr: u.lr, implicitAcc: u.implicit_acc_accumulated ?? null, pairsPerSecond: row.pairs_per_s!, badRows: s.badRows.total });
      if (step % s.config.output.checkpointingSteps === 0) await saveState(s, events);
      // judged from 100 rows on, and always once a whole epoch's share of the rows has been read;
      // with several processes on the sums over all of them, so that every rank stops together
      let [loaderBad, seen] = [Object.values(s.loader.badRows).reduce((a, b) => a + b, 0), s.loader.rowsSeen];
      if (s.dp) [loaderBad, seen] = (await s.dp.sum([loaderBad, seen])) as [number, number];
      s.badRows.check(loaderBad, seen, 'rows read', seen >= s.loader.sequence(0).length * s.config.batch.worldSize);
      await new Promise((r) => setImmediate(r)); // let finalizers, I/O and signals run between updates
    }
  } catch (e) {
    if (e instanceof NonFiniteLossError) throw new UserError(`${e.message}: training stopped; ${await saveLastGoodState(s, events)}`, { cause: e });
    if (e instanceof BadDataError) {
      await flushSaves(s);
      const unsaved = () => s.progress.globalStep > startStep && !existsSync(checkpointPathOf(s.config.output.dir, s.progress.globalStep));
      // rank 0 decides (its writes are complete; another node's view of the folder may lag)
      const saved = (s.dp ? await s.dp.decide(unsaved) : unsaved()) ? await saveState(s, events, { wait: true }) : null;
      throw new BadDataError(`training stopped at step ${s.progress.globalStep}: ${e.message}${saved ? `. The state is saved in ${saved}` : ''}`);
    }
    throw e;
  }
  if (s.progress.globalStep === 0) throw new BadDataError('the run ended without a single update: no batch could be made from the data');
  return 'done';
}

/** The file a finished run describes itself in (read by upload's model card). */
export const TRAINING_RUN_FILE = 'training_run.json';

/** What a finished run was (a LoRA file's metadata says the same; upload's model card reads it). */
function resultDescription(s: TrainState): Record<string, unknown> {
  const c = s.config;
  return {
    base_model: c.model.name, unet_init: c.model.unetInit, objective: c.objective.method === 'sft' ? 'sft' : c.objective.lossType,
    beta_dpo: c.objective.betaDpo, steps: s.progress.globalStep, effective_batch: c.batch.perDevice * c.batch.accumulation * c.batch.worldSize,
    learning_rate: c.schedule.learningRate, resolution: c.data.resolution, dataset: c.data.source,
    noising: c.objective.noising.kind,
    lora: c.lora ? { rank: c.lora.rank, alpha: c.lora.alpha ?? c.lora.rank, targets: c.lora.targets, init: c.lora.init, alpha_folded: true } : null,
  };
}

/** Writes the final pipeline (diffusers layout, the trained UNet in it), the report, and frees the state. */
export async function finish(s: TrainState, stoppedBy: TrainResult['stoppedBy'], events: TrainEvents): Promise<TrainResult> {
  await flushSaves(s);
  const writer = !s.dp || s.dp.rank === 0;
  if (stoppedBy === 'done' && writer) {
    // what the run was, for model cards (upload) and people: the same facts a LoRA file's metadata holds
    writeFileAtomic(join(s.config.output.dir, TRAINING_RUN_FILE), JSON.stringify(resultDescription(s), null, 2) + '\n');
    if (s.adapters) {
      const file = saveLoraWeights(s.config.output.dir, s.unet, s.adapters, resultDescription(s));
      events.info(`saved the LoRA weights to ${file} (diffusers' layout; diffusion-dpo merge-lora folds them into the pipeline)`);
    } else {
      if (s.pipeline) savePipeline(s.config.output.dir, s.pipeline);
      else savePipelineWithUNet(s.config.output.dir, s.paths.modelPath, s.unet, { vaeFolder: s.paths.vaeFolder });
      events.info(`saved the pipeline to ${s.config.output.dir}`);
    }
  }
  // the job is done when rank 0 has written everything
  if (s.dp) await s.dp.barrier();
  if (s.badRows.total) events.info(`unusable rows: ${s.badRows.total} (${s.badRows.describe()}), listed in ${s.badRows.file}`);
  const resources = s.monitor.summary();
  events.info(`resources: ${resources.pairs_per_s.toFixed(2)} pairs/s on average, ${(100 * resources.data_wait_share).toFixed(0)}% of the time waiting for data; host peak RSS ${mb(resources.host_peak_rss_mb)}` +
    (resources.cuda_peak_allocated_mb !== undefined ? `; device peak ${mb(resources.cuda_peak_allocated_mb)} allocated, ${mb(resources.cuda_peak_reserved_mb!)} reserved` : ''));
  s.metrics?.close(s.progress.history, resources, s.badRows.counts, resultDescription(s));
  return { globalStep: s.progress.globalStep, history: s.progress.history, outputDir: s.config.output.dir, stoppedBy, resources };
}

export async function teardown(s: TrainState, o: { failed?: boolean } = {}): Promise<void> {
  // a run that failed still finishes writing the checkpoint it started (its error, if any, was already reported or is the lesser one)
  await s.saves.pending?.catch(() => undefined);
  await s.loader.close();
  s.optimizer.dispose();
  s.scaler?.dispose();
  s.models.noise.dispose();
  s.models.refUnet?.dispose();
  s.adapters?.remove();
  if (s.placement instanceof OffloadPlacement) s.placement.dispose();
  if (s.pipeline) disposePipeline(s.pipeline);
  else s.unet.dispose();
  s.dp?.destroy(o);
}

/** setup -> fit -> save. */
export async function train(config: TrainConfig, events: TrainEvents, o: { signal?: AbortSignal } = {}): Promise<TrainResult> {
  const state = await setup(config, events);
  let failed = true;
  try {
    const stoppedBy = await fit(state, events, o.signal);
    const result = await finish(state, stoppedBy, events);
    failed = false;
    return result;
  } finally {
    await teardown(state, { failed });
  }
}
