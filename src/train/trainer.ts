// The trainer: setup (models, data, optimizer, schedule, resume) -> fit (the loop) -> save. It runs
// train.py's schedule of events: micro-steps accumulate gradients (the loss divided by the
// accumulation count, as accelerate's backward does), every `gradient_accumulation_steps` an
// update clips (unless --use_adafactor), steps the optimizer and the LR schedule and logs
// train_loss, model_mse_unaccumulated, ref_mse_unaccumulated, implicit_acc_accumulated and lr;
// every `checkpointing_steps` updates the full state is saved; at the end the pipeline is written.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../torch/index.js';
import { PreferenceDataset } from '../data/dataset.js';
import { PairLoader } from '../data/loader.js';
import { resolveDataset, resolveModel } from '../hub/index.js';
import { loadPipeline, loadUNet, savePipeline, disposePipeline, type PipelineComponents } from '../models/index.js';
import { loadNoiseScheduleConfig, NoiseSchedule } from '../schedulers/noise_schedule.js';
import { CLIPTokenizer } from '../tokenizers/clip.js';
import type { TrainArgs } from './args.js';
import { checkpointDirs, loadCheckpoint, rngState, saveCheckpoint, setRngState, type TrainerState } from './checkpoint.js';
import { MetricsLog } from './metrics.js';
import { diffusionStep, type DiffusionModels, type TimestepMode } from './step.js';

export interface TrainEvents {
  /** A line for the user (setup facts, warnings). */
  info(msg: string): void;
  /** After each update. */
  update(p: { step: number; total: number; loss: number; lr: number; implicitAcc: number | null; pairsPerSecond: number }): void;
}

export interface TrainResult {
  globalStep: number;
  history: Record<string, number>[];
  outputDir: string;
  stoppedBy: 'done' | 'signal';
}

class NonFiniteLossError extends Error {}

function device(): torch.Device {
  return torch.cuda.isAvailable() ? 'cuda' : 'cpu';
}

export async function train(args: TrainArgs, events: TrainEvents, o: { signal?: AbortSignal } = {}): Promise<TrainResult> {
  const world = Number(process.env.WORLD_SIZE ?? 1);
  if (world > 1) throw new Error('multi-process training (WORLD_SIZE > 1) is not supported yet: run one process');
  const dev = device();
  const method = args.sft ? 'sft' : 'dpo';
  const seed = args.seed ?? Math.floor(Math.random() * 2 ** 31);
  torch.manualSeed(seed);
  if (args.allow_tf32) torch.setAllowTF32(true);

  // mixed precision: frozen models in the compute dtype, the trained UNet in float32 under autocast
  let precision = args.mixed_precision ?? 'no';
  if (precision === 'fp16' && dev === 'cpu') {
    events.info('mixed_precision fp16 needs a GPU: this CPU run uses float32 (pass --mixed_precision bf16 for CPU autocast)');
    precision = 'no';
  }
  const weightDtype: torch.DType = precision === 'fp16' ? 'float16' : precision === 'bf16' ? 'bfloat16' : 'float32';
  if (args.gradient_checkpointing || args.sdxl) events.info('gradient checkpointing is not implemented yet: training runs without it (same numbers, more memory)');

  // --- models
  const modelPath = await resolveModel(args.pretrained_model_name_or_path!, { revision: args.revision ?? undefined, cacheDir: args.cache_dir ?? undefined });
  const unetSource = args.unet_init ? await resolveModel(args.unet_init, { cacheDir: args.cache_dir ?? undefined }) : modelPath;
  const vaeFolder = args.pretrained_vae_model_name_or_path ? await resolveModel(args.pretrained_vae_model_name_or_path, { cacheDir: args.cache_dir ?? undefined }) : undefined;
  const p: PipelineComponents = loadPipeline(modelPath, { device: dev, unetFolder: join(unetSource, 'unet'), vaeFolder });
  if (args.sdxl !== (p.kind === 'sdxl')) throw new Error(`${modelPath} is a${p.kind === 'sdxl' ? 'n SDXL' : ' Stable Diffusion 1.x/2.x'} pipeline: ${args.sdxl ? 'drop' : 'add'} --sdxl`);
  p.vae.to(weightDtype).requiresGrad_(false).eval();
  p.textEncoder?.to(weightDtype).requiresGrad_(false).eval();
  p.textEncoder2?.to(weightDtype).requiresGrad_(false).eval();
  const refUnet = method === 'dpo' ? loadUNet(join(unetSource, 'unet'), { device: dev, dtype: weightDtype }) : null;
  refUnet?.requiresGrad_(false).eval();
  p.unet.train();
  const name = args.pretrained_model_name_or_path!;
  const timestepMode: TimestepMode = name.includes('refiner') ? 'refiner' : name.includes('turbo') ? 'turbo' : 'default';
  const noise = new NoiseSchedule(loadNoiseScheduleConfig(join(modelPath, 'scheduler')));
  if (timestepMode === 'turbo') noise.enforceZeroTerminalSnr();
  const tokenizer = existsSync(join(modelPath, 'tokenizer')) ? CLIPTokenizer.fromFolder(join(modelPath, 'tokenizer')) : null;
  const tokenizer2 = existsSync(join(modelPath, 'tokenizer_2')) ? CLIPTokenizer.fromFolder(join(modelPath, 'tokenizer_2')) : null;
  const models: DiffusionModels = { kind: p.kind, unet: p.unet, refUnet, vae: p.vae, textEncoder: p.textEncoder, textEncoder2: p.textEncoder2, tokenizer, tokenizer2, noise };

  // --- data
  const dataSource = await resolveDataset(args.dataset_name ?? args.train_data_dir!, { split: args.split ?? 'train', cacheDir: args.cache_dir ?? undefined });
  const dataset = await PreferenceDataset.open(dataSource, {
    split: args.split ?? 'train', dreamlikePairsOnly: args.dreamlike_pairs_only, maxTrainSamples: args.max_train_samples ?? undefined, seed, method,
    columns: { caption: args.caption_column ?? 'caption' },
  });
  events.info(`data: ${dataset.stats.source}; ${dataset.stats.rowsRead} rows read, eliminated ${dataset.stats.tiesRemoved}/${dataset.stats.rowsRead} split decisions, ${dataset.stats.kept} kept`);
  const loader = new PairLoader(dataset, {
    batchSize: args.train_batch_size!, resolution: args.resolution!, seed, randomCrop: args.random_crop, hflip: !args.no_hflip,
    proportionEmptyPrompts: args.proportion_empty_prompts ?? 0, numWorkers: args.dataloader_num_workers ?? 0,
    tokenize: p.kind === 'sd' && tokenizer ? (caps) => tokenizer.encodeBatch(caps).map((e) => e.inputIds) : null,
  });
  const accum = args.gradient_accumulation_steps!;
  const updatesPerEpoch = Math.ceil(loader.stepsPerEpoch / accum);
  if (updatesPerEpoch === 0) throw new Error(`the dataset has ${dataset.length} usable rows: fewer than one batch of ${args.train_batch_size}`);
  const maxSteps = args.max_train_steps ?? args.num_train_epochs! * updatesPerEpoch;
  const maxEpochs = Math.ceil(maxSteps / updatesPerEpoch);

  // --- optimizer and schedule (as train.py: --sdxl forces Adafactor; clipping is skipped only for --use_adafactor)
  const lr = args.scale_lr ? args.learning_rate! * accum * args.train_batch_size! * world : args.learning_rate!;
  const params = p.unet.parameters();
  const optimizer: torch.optim.Optimizer<{ lr: number }> = args.use_adafactor || args.sdxl
    ? new torch.optim.Adafactor(params, { lr, weightDecay: args.adam_weight_decay!, clipThreshold: 1.0, scaleParameter: false, relativeStep: false })
    : new torch.optim.AdamW(params, { lr, betas: [args.adam_beta1!, args.adam_beta2!], weightDecay: args.adam_weight_decay!, eps: args.adam_epsilon!, fused: dev !== 'cpu' });
  const schedule = torch.optim.getScheduler(args.lr_scheduler as torch.optim.ScheduleName, optimizer, { numWarmupSteps: args.lr_warmup_steps! * world, numTrainingSteps: maxSteps * world });
  const scaler = precision === 'fp16' ? new torch.GradScaler(dev) : null;

  // --- output, logs, resume
  const outputDir = args.output_dir!;
  mkdirSync(outputDir, { recursive: true });
  const metrics = new MetricsLog(join(outputDir, args.logging_dir ?? 'logs'), args.report_to === 'tensorboard');
  let globalStep = 0;
  let history: Record<string, number>[] = [];
  const resume = args.resume_from_checkpoint && args.resume_from_checkpoint !== 'none' ? args.resume_from_checkpoint : null;
  if (resume) {
    const path = resume === 'latest' ? checkpointDirs(outputDir).pop()?.path : resume;
    if (path) {
      const st = loadCheckpoint(path, p.unet, optimizer);
      globalStep = st.globalStep;
      history = st.history;
      schedule.loadStateDict(st.scheduler as { name: torch.optim.ScheduleName; lastEpoch: number });
      if (st.scaler && scaler) scaler.loadStateDict(st.scaler);
      loader.setState(st.loader);
      setRngState(st.cpuRng);
      events.info(`resumed from ${path} at step ${globalStep}`);
    } else if (resume !== 'latest') {
      throw new Error(`--resume_from_checkpoint ${resume}: no such checkpoint`);
    }
  }
  const state = (): TrainerState => ({
    globalStep, loader: loader.state(), scheduler: { name: schedule.name, lastEpoch: schedule.lastEpoch },
    scaler: scaler?.stateDict() ?? null, cpuRng: rngState(), history, version: 1,
  });
  const checkpoint = () => {
    const path = saveCheckpoint(outputDir, globalStep, p.unet, optimizer, state(), args.checkpoints_total_limit ?? null);
    events.info(`saved ${path}`);
  };

  // --- fit
  let stoppedBy: TrainResult['stoppedBy'] = 'done';
  const stepCfg = {
    method, betaDpo: args.beta_dpo!, noiseOffset: args.noise_offset ?? 0, inputPerturbation: args.input_perturbation ?? 0,
    timestepMode, resolution: args.resolution!, weightDtype,
  } as const;
  const autocastOn = precision !== 'no';
  try {
    while (globalStep < maxSteps) {
      if (o.signal?.aborted) {
        stoppedBy = 'signal';
        checkpoint();
        break;
      }
      const t0 = performance.now();
      let trainLoss = 0;
      let accAccumulated = 0;
      let modelMse = 0;
      let refMse = 0;
      let pairs = 0;
      for (let micro = 0; micro < accum; micro++) {
        let batch = await loader.next();
        if (!batch) {
          if (loader.state().epoch >= maxEpochs) break;
          batch = await loader.next();
          if (!batch) throw new Error('the data loader produced no batch for a whole epoch (every row bad?)');
        }
        pairs += batch.shape[0];
        const b = batch;
        const values = torch.tidy(() => {
          const pixelValues = torch.fromTypedArray(b.pixelValues, [...b.shape]);
          const inputIds = b.inputIds ? torch.tensor(b.inputIds, { dtype: 'int64' }) : undefined;
          const run = () => diffusionStep(models, { pixelValues, inputIds, captions: b.captions }, stepCfg);
          const r = autocastOn ? torch.autocast({ device: dev, dtype: weightDtype }, run) : run();
          const scaled = r.loss.div(accum);
          (scaler ? scaler.scale(scaled) : scaled).backward();
          // one host read per micro-step, for the logs (as train.py's .item() calls)
          const stats = torch.stack([r.loss.float(), ...(r.dpo ? [r.dpo.implicitAcc, r.dpo.rawModelLoss.float(), r.dpo.rawRefLoss.float()] : [])]).toArray();
          return stats;
        });
        if (!Number.isFinite(values[0]!) && !scaler) throw new NonFiniteLossError(`loss is ${values[0]} at step ${globalStep + 1}`);
        trainLoss += values[0]! / accum;
        if (method === 'dpo') {
          accAccumulated += values[1]! / accum;
          modelMse = values[2]!;
          refMse = values[3]!;
        }
      }
      if (pairs === 0) break; // epochs exhausted
      // the update
      torch.tidy(() => {
        if (scaler) scaler.unscale_(optimizer);
        if (!args.use_adafactor) torch.optim.clipGradNorm_(params, args.max_grad_norm!);
        if (scaler) {
          scaler.step(optimizer);
          scaler.update();
        } else {
          optimizer.step();
        }
        for (let i = 0; i < world; i++) schedule.step();
        optimizer.zeroGrad();
      });
      globalStep++;
      const row: Record<string, number> = { step: globalStep, train_loss: trainLoss, lr: schedule.getLastLr()[0]! };
      if (method === 'dpo') Object.assign(row, { model_mse_unaccumulated: modelMse, ref_mse_unaccumulated: refMse, implicit_acc_accumulated: accAccumulated });
      history.push(row);
      metrics.log(globalStep, row);
      events.update({ step: globalStep, total: maxSteps, loss: trainLoss, lr: row.lr!, implicitAcc: method === 'dpo' ? accAccumulated : null, pairsPerSecond: pairs / ((performance.now() - t0) / 1000) });
      if (globalStep % args.checkpointing_steps! === 0) checkpoint();
      await new Promise((r) => setImmediate(r)); // let finalizers, I/O and signals run between updates
    }
  } catch (e) {
    if (e instanceof NonFiniteLossError) {
      // nothing of this update was applied: the weights are the last good state
      checkpoint();
      throw new Error(`${e.message}: training stopped; the last good state is saved in ${outputDir}/checkpoint-${globalStep}`);
    }
    throw e;
  } finally {
    await loader.close();
  }

  // --- the final pipeline, with the trained UNet
  if (stoppedBy === 'done') {
    savePipeline(outputDir, p);
    events.info(`saved the pipeline to ${outputDir}`);
  }
  metrics.close(history);
  optimizer.dispose();
  scaler?.dispose();
  noise.dispose();
  refUnet?.dispose();
  disposePipeline(p);
  return { globalStep, history, outputDir, stoppedBy };
}
