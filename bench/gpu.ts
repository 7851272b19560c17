// The GPU benchmark that scripts/gpu-check.sh runs (and, with --cpu, CI on tiny models, so that it
// never rots). Each stage runs ours, then the reference's step logic on diffusers 0.20 in Python
// (bench/gpu_reference.py) on the same GPU in the same run, and the results are written after each
// stage: OUT/gpu-bench.json and OUT/gpu-bench.md. Stages (bench/gpu_config.json):
//   a  SD1.5 UNet fwd+bwd and a full DPO step (VAE encode, trained UNet under autocast, reference
//      UNet, loss, backward, clip, fused AdamW) at 512 px with 1, 2 and 4 pairs, bf16 autocast and
//      fp16 with the grad scaler: pairs/s and peak device memory
//   b  an SDXL DPO step at 1024 px with gradient checkpointing and Adafactor
//   c  sampling at 512 px, 25 steps, guidance 7.5: s/image
//   d  data-parallel scaling (bench/ddp.ts): 1 process against one per GPU over NCCL (the full-size
//      SD1.5 UNet at a 32x32 latent, 2 pairs per process), ours and PyTorch's DDP; with --cpu the
//      mid-size UNet on 1 and 2 processes over Gloo
//   e  the performance levers, ours only, against our own baseline: channels-last weights, each
//      SDPA kernel alone (flash, memory-efficient, math, cuDNN), and TF32 for float32
//   f  the data pipeline feeding the DPO step, ours only: 768x640 JPEG pairs from a parquet shard
//      through the loader with 0 and N workers, uint8 batches copied and scaled on the device, the
//      update's wait for the device off the JS thread: pairs/s and the share of time the loop
//      waited for data (what the GPU idles for lack of input), against the same step fed a batch
//      already on the device
// Every stage is time-boxed (--budget seconds, spent across its configurations); what did not fit
// is recorded as skipped.
//
//   node dist/bench/gpu.js --out DIR [--cpu] [--stages a,b,c] [--budget S] [--repeats N]
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as torch from '../src/torch/index.js';
import { AutoencoderKL, UNet2DConditionModel, loadUNet, loadVAE, readConfig, type PipelineComponents, type RawConfig } from '../src/models/index.js';
import { NoiseSchedule, parseNoiseScheduleConfig } from '../src/schedulers/noise_schedule.js';
import { schedulerFromConfig } from '../src/schedulers/samplers.js';
import { generate } from '../src/pipelines/text_to_image.js';
import { createDiffusionStep, type DiffusionModels, type StepBatch } from '../src/train/step.js';
import { batchToDevice } from '../src/train/batch_inputs.js';
import { PreferenceDataset } from '../src/data/dataset.js';
import { PairLoader } from '../src/data/loader.js';
import { writeShard, type FakeRow } from '../test/helpers/pickapic.js';
import { photo } from './photos.js';
import { parseFlags } from '../src/util/flags.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixtures = process.env.FIXTURES_DIR ?? join(root, '..', 'shared', 'fixtures');
const { values: o } = parseFlags({
  out: { type: 'string', default: null, help: 'results folder' },
  cpu: { type: 'boolean', default: false, help: 'tiny models on the CPU (what CI runs)' },
  stages: { type: 'string', default: 'a,f,b,c,d,e', help: 'stages to run (in this order; f right after a: the time box may cut the last)' },
  budget: { type: 'int', default: 150, min: 1, help: 'seconds per stage, per side' },
  repeats: { type: 'int', default: 3, min: 1, help: 'timed repeats (best of)' },
}, process.argv.slice(2));
if (!o.out) throw new Error('--out DIR is required');
const out = o.out;
mkdirSync(out, { recursive: true });

interface Stage { model: string; resolution: number; pairs?: number[] | number; precision?: string[] | string; gradient_checkpointing?: boolean; optimizer?: string; steps?: number; guidance?: number; workers?: number[]; updates?: number }
interface ModelSpec { unet: RawConfig; vae: RawConfig; scheduler: RawConfig; context: [number, number]; pooled?: number }
const cfg = JSON.parse(readFileSync(join(root, 'bench', 'gpu_config.json'), 'utf8')) as { models: Record<string, ModelSpec>; stages: Record<string, Stage>; cpu_stages: Record<string, Stage> };
const stages = o.cpu ? cfg.cpu_stages : cfg.stages;
const device: torch.Device = o.cpu ? 'cpu' : 'cuda';
if (!o.cpu && !torch.cuda.isAvailable()) throw new Error('CUDA is not available to this libtorch (run with --cpu for the CPU mode)');

type Row = Record<string, string | number | null>;
const results: { machine: Record<string, unknown>; stages: Record<string, { rows: Row[]; notes: string[] }> } = {
  machine: {
    date: new Date().toISOString(), libtorch: torch.buildInfo().torchVersion, device, cpu: cpus()[0]?.model ?? 'unknown', threads: torch.getNumThreads(),
    cuda_devices: torch.cuda.isAvailable() ? torch.cuda.deviceCount() : 0,
  },
  stages: {},
};

function save(): void {
  writeFileSync(join(out, 'gpu-bench.json'), JSON.stringify(results, null, 2));
  const md = [`# GPU check benchmark (${results.machine.date}, ${device}, libtorch ${results.machine.libtorch})`, ''];
  for (const [name, s] of Object.entries(results.stages)) {
    md.push(`## stage ${name}`, '');
    if (s.rows.length) {
      const cols = [...new Set(s.rows.flatMap((r) => Object.keys(r)))];
      md.push(`| ${cols.join(' | ')} |`, `| ${cols.map(() => '---').join(' | ')} |`);
      const cell = (v: string | number | null | undefined) => (typeof v !== 'number' ? (v ?? '') : Number.isInteger(v) ? String(v) : v.toPrecision(4));
      for (const r of s.rows) md.push(`| ${cols.map((c) => cell(r[c])).join(' | ')} |`);
    }
    for (const n of s.notes) md.push('', `- ${n}`);
    md.push('');
  }
  writeFileSync(join(out, 'gpu-bench.md'), md.join('\n'));
}

function sync(): void {
  if (device === 'cuda') torch.cuda.synchronize();
}
function resetPeak(): void {
  if (device === 'cuda') torch.cuda.resetPeakMemoryStats();
}
function peakMb(): number | null {
  return device === 'cuda' ? torch.cuda.memory().peakAllocated / 2 ** 20 : null;
}

/** Best time of `repeats` runs after a warm-up, or null when the stage's budget is spent. */
function time(fn: () => void, deadline: number): number | null {
  if (performance.now() > deadline) return null;
  fn();
  sync();
  let best = Infinity;
  for (let i = 0; i < o.repeats && performance.now() < deadline; i++) {
    const t0 = performance.now();
    fn();
    sync();
    best = Math.min(best, (performance.now() - t0) / 1000);
  }
  return best;
}

/** The models of a stage: full-size configs with random weights built on the device, or a tiny fixture. */
function unetConfig(model: string): RawConfig {
  return cfg.models[model] ? cfg.models[model]!.unet : readConfig(join(fixtures, model, 'unet'));
}
function buildUNet(model: string, dtype: torch.DType = 'float32'): UNet2DConditionModel {
  if (!cfg.models[model]) return loadUNet(join(fixtures, model, 'unet'), { device, dtype });
  torch.manualSeed(0);
  return new UNet2DConditionModel(cfg.models[model]!.unet, { device }).to(dtype);
}
function buildVAE(model: string, dtype: torch.DType): AutoencoderKL {
  if (!cfg.models[model]) return loadVAE(join(fixtures, model, 'vae'), { device, dtype });
  return new AutoencoderKL(cfg.models[model]!.vae, { device }).to(dtype);
}
function schedulerConfig(model: string): RawConfig {
  return cfg.models[model] ? cfg.models[model]!.scheduler : JSON.parse(readFileSync(join(fixtures, model, 'scheduler', 'scheduler_config.json'), 'utf8')) as RawConfig;
}

const DTYPES: Record<string, torch.DType> = { fp32: 'float32', bf16: 'bfloat16', fp16: 'float16' };

/** Stages a and b on our side: UNet fwd+bwd and a full DPO step per (pairs, precision). */
function trainingStage(s: Stage, deadline: number): Row[] {
  const rows: Row[] = [];
  const uc = unetConfig(s.model);
  const sdxl = uc.addition_embed_type === 'text_time';
  const unet = buildUNet(s.model).train();
  if (s.gradient_checkpointing) unet.enableGradientCheckpointing();
  const params = unet.parameters();
  const opt = s.optimizer === 'adafactor'
    ? new torch.optim.Adafactor(params, { lr: 1e-6, clipThreshold: 1.0, scaleParameter: false, relativeStep: false })
    : new torch.optim.AdamW(params, { lr: 1e-6, fused: device === 'cuda' });
  const noise = new NoiseSchedule(parseNoiseScheduleConfig(schedulerConfig(s.model)));
  const width = (unet.config.crossAttentionDim[0]!);
  for (const precision of (s.precision as string[] | undefined) ?? ['fp32']) {
    const dtype = DTYPES[precision]!;
    const ref = buildUNet(s.model, dtype).requiresGrad_(false).eval();
    const vae = buildVAE(s.model, dtype).requiresGrad_(false).eval();
    const scaler = precision === 'fp16' ? new torch.GradScaler(device) : null;
    const autocast = precision === 'fp32' ? null : { device, dtype };
    const models: DiffusionModels = { kind: sdxl ? 'sdxl' : 'sd', unet, refUnet: ref, vae, textEncoder: null, textEncoder2: null, tokenizer: null, tokenizer2: null, noise };
    const step = createDiffusionStep(models, { method: 'dpo', betaDpo: 5000, noiseOffset: 0, inputPerturbation: 0, timestepMode: 'default', resolution: s.resolution, weightDtype: dtype, autocast });
    for (const pairs of (s.pairs as number[] | undefined) ?? [1]) {
      const g = new torch.Generator('cpu', 0);
      const pixels = torch.tidy(() => torch.rand([pairs, 6, s.resolution, s.resolution], { generator: g }).mul(2).sub(1).to({ device }).keep());
      const ehs = torch.randn([pairs, 77, width], { generator: g }).to({ device, dtype }).keep();
      const pooled = sdxl ? torch.randn([pairs, Number(uc.projection_class_embeddings_input_dim) - 6 * Number(uc.addition_time_embed_dim)], { generator: g }).to({ device, dtype }).keep() : null;
      const f = 2 ** (vae.config.blockOutChannels.length - 1);
      const latents = torch.randn([2 * pairs, 4, s.resolution / f, s.resolution / f], { generator: g }).to({ device }).keep();
      const timesteps = torch.tensor(Array.from({ length: 2 * pairs }, (_, i) => (i * 137) % 1000), { dtype: 'int64', device }).keep();
      const ehs2 = ehs.repeat(2, 1, 1).keep();
      const added = pooled ? { textEmbeds: pooled.repeat(2, 1).keep(), timeIds: torch.tensor(Array(2 * pairs).fill([s.resolution, s.resolution, 0, 0, s.resolution, s.resolution]).flat(), { dtype, device }).reshape(2 * pairs, 6).keep() } : undefined;
      const fwdBwd = () => torch.tidy(() => {
        const run = () => unet.forward(latents, timesteps, ehs2, { addedCond: added }).sample;
        const pred = autocast ? torch.autocast(autocast, run).float() : run();
        const loss = pred.pow(2).mean();
        (scaler ? scaler.scale(loss) : loss).backward();
        opt.zeroGrad();
      });
      const dpoStep = () => torch.tidy(() => {
        const r = step({ pixelValues: pixels, encoderHiddenStates: ehs, pooledPromptEmbeds: pooled ?? undefined });
        (scaler ? scaler.scale(r.loss) : r.loss).backward();
        if (scaler) scaler.unscale_(opt);
        torch.optim.clipGradNorm_(params, 1.0);
        if (scaler) {
          scaler.step(opt);
          scaler.update();
        } else opt.step();
        opt.zeroGrad();
      });
      resetPeak();
      const tUnet = time(fwdBwd, deadline);
      const unetPeak = peakMb();
      resetPeak();
      const tStep = time(dpoStep, deadline);
      rows.push({
        side: 'ours', precision, pairs, unet_fwd_bwd_s: tUnet, unet_peak_mb: unetPeak,
        dpo_step_s: tStep, dpo_pairs_per_s: tStep === null ? null : pairs / tStep, dpo_peak_mb: peakMb(),
      });
      for (const t of [pixels, ehs, ehs2, latents, timesteps, pooled, added?.textEmbeds, added?.timeIds]) t?.dispose();
      save();
    }
    scaler?.dispose();
    ref.dispose();
    vae.dispose();
  }
  opt.dispose();
  noise.dispose();
  unet.dispose();
  return rows;
}

/** Stage f: the loader feeding the DPO step, with 0 and N workers, against a batch already on the device. */
async function dataStage(s: Stage, deadline: number): Promise<Row[]> {
  const rows: Row[] = [];
  const work = mkdtempSync(join(tmpdir(), 'dpo-gpu-data-'));
  const pairs = (s.pairs as number | undefined) ?? 1;
  const updates = s.updates ?? 20;
  const dtype = DTYPES[(s.precision as string | undefined) ?? 'fp32']!;
  const unet = buildUNet(s.model).train();
  const ref = buildUNet(s.model, dtype).requiresGrad_(false).eval();
  const vae = buildVAE(s.model, dtype).requiresGrad_(false).eval();
  const noise = new NoiseSchedule(parseNoiseScheduleConfig(schedulerConfig(s.model)));
  const params = unet.parameters();
  const opt = new torch.optim.AdamW(params, { lr: 1e-6, fused: device === 'cuda' });
  const models: DiffusionModels = { kind: 'sd', unet, refUnet: ref, vae, textEncoder: null, textEncoder2: null, tokenizer: null, tokenizer2: null, noise };
  const step = createDiffusionStep(models, {
    method: 'dpo', betaDpo: 5000, noiseOffset: 0, inputPerturbation: 0, timestepMode: 'default', resolution: s.resolution, weightDtype: dtype,
    autocast: dtype === 'float32' ? null : { device, dtype },
  });
  const ehs = torch.randn([pairs, 77, unet.config.crossAttentionDim[0]!], { device, dtype }).keep();
  const update = (b: StepBatch) => torch.tidy(() => {
    const r = step({ ...b, encoderHiddenStates: ehs });
    r.loss.backward();
    torch.optim.clipGradNorm_(params, 1.0);
    opt.step();
    opt.zeroGrad();
  });
  const deviceIdle = () => (device === 'cuda' ? torch.cuda.synchronizeAsync() : Promise.resolve());
  try {
    const images = await Promise.all(Array.from({ length: 8 }, (_, i) => photo(i)));
    const fake: FakeRow[] = Array.from({ length: 64 }, (_, i) => ({
      caption: `a photo ${i}`, jpg0: images[i % 8]!, jpg1: images[(i + 3) % 8]!, label0: 1, label1: 0, model0: 'm', model1: 'm',
    }));
    writeShard(join(work, 'train-00000-of-00001.parquet'), fake, { rowGroupSize: 16 });
    const ds = await PreferenceDataset.open(work);
    // the ceiling: the same loop on a batch that is already on the device
    const fixed = torch.tidy(() => torch.rand([pairs, 6, s.resolution, s.resolution], { device }).mul(2).sub(1).keep());
    update({ pixelValues: fixed });
    await deviceIdle();
    let t0 = performance.now();
    for (let i = 0; i < updates && performance.now() < deadline; i++) {
      update({ pixelValues: fixed });
      await deviceIdle();
    }
    const ceiling = (updates * pairs) / ((performance.now() - t0) / 1000);
    fixed.dispose();
    rows.push({ side: 'ours', input: 'batch on the device', workers: null, pairs_per_s: ceiling, data_wait_share: 0 });
    save();
    for (const workers of s.workers ?? [0]) {
      if (performance.now() > deadline) break;
      const loader = new PairLoader(ds, { batchSize: pairs, resolution: s.resolution, seed: 0, numWorkers: workers });
      const next = async () => (await loader.next()) ?? (await loader.next())!;
      update(batchToDevice(await next(), device)); // warm-up: worker threads start, the window fills
      await deviceIdle();
      let wait = 0;
      t0 = performance.now();
      let done = 0;
      for (; done < updates && performance.now() < deadline; done++) {
        const w0 = performance.now();
        const batch = await next();
        wait += performance.now() - w0;
        update(batchToDevice(batch, device));
        await deviceIdle();
      }
      const seconds = (performance.now() - t0) / 1000;
      await loader.close();
      rows.push({ side: 'ours', input: 'loader', workers, pairs_per_s: (done * pairs) / seconds, data_wait_share: wait / 1000 / seconds });
      save();
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
    ehs.dispose();
    opt.dispose();
    noise.dispose();
    for (const m of [unet, ref, vae]) m.dispose();
  }
  return rows;
}

/** Stage c on our side: seconds per image. */
function samplingStage(s: Stage, deadline: number): Row[] {
  const dtype: torch.DType = device === 'cuda' ? 'float16' : 'float32';
  const unet = buildUNet(s.model, dtype).eval();
  const vae = buildVAE(s.model, device === 'cuda' ? 'float32' : dtype).eval(); // decoded in float32 (SD VAEs overflow in fp16)
  const p: PipelineComponents = { kind: 'sd', index: {}, folder: '', textEncoder: null, textEncoder2: null, unet, vae };
  const width = unet.config.crossAttentionDim[0]!;
  const g = new torch.Generator('cpu', 0);
  const cond = torch.randn([1, 77, width], { generator: g }).to({ device, dtype }).keep();
  const uncond = torch.randn([1, 77, width], { generator: g }).to({ device, dtype }).keep();
  const image = (n: number) => torch.tidy(() => {
    generate({ pipeline: p, scheduler: schedulerFromConfig(schedulerConfig(s.model)), tokenizer: null, tokenizer2: null }, {
      prompts: [''], embeds: { prompt: cond, negative: uncond }, numInferenceSteps: n, guidanceScale: s.guidance ?? 7.5,
      height: s.resolution, width: s.resolution, generator: new torch.Generator('cpu', 0),
    }).images.toTypedArray();
  });
  resetPeak();
  const t = time(() => image(s.steps ?? 25), deadline);
  const row: Row = { side: 'ours', dtype, steps: s.steps ?? 25, resolution: s.resolution, s_per_image: t, peak_mb: peakMb() };
  cond.dispose();
  uncond.dispose();
  unet.dispose();
  vae.dispose();
  return [row];
}

/** Stage e: UNet fwd+bwd under each lever, against the same run's baseline (ours only). */
function leverStage(s: Stage, deadline: number): Row[] {
  const pairs = s.pairs as number;
  const unet = buildUNet(s.model).train();
  const f = 2 ** (buildVAEScale(s.model) - 1);
  const g = new torch.Generator('cpu', 0);
  const x = torch.randn([2 * pairs, 4, s.resolution / f, s.resolution / f], { generator: g }).to({ device }).keep();
  const ehs = torch.randn([2 * pairs, 77, unet.config.crossAttentionDim[0]!], { generator: g }).to({ device }).keep();
  const t = torch.tensor(Array.from({ length: 2 * pairs }, (_, i) => (i * 137) % 1000), { dtype: 'int64', device }).keep();
  const fwdBwd = (dtype: torch.DType | null) => () => torch.tidy(() => {
    const run = () => unet.forward(x, t, ehs).sample;
    (dtype ? torch.autocast({ device, dtype }, run).float() : run()).pow(2).mean().backward();
    unet.zeroGrad();
  });
  const dtype = DTYPES[s.precision as string]!;
  const rows: Row[] = [];
  const measure = (lever: string, autocastDtype: torch.DType | null) => {
    resetPeak();
    let seconds: number | null = null;
    let note = '';
    try {
      seconds = time(fwdBwd(autocastDtype), deadline);
    } catch (e) {
      note = (e as Error).message.split('\n')[0]!.slice(0, 120);
    }
    rows.push({ lever, precision: autocastDtype ?? 'float32', unet_fwd_bwd_s: seconds, peak_mb: peakMb(), note });
  };
  measure('baseline', dtype);
  unet.toMemoryFormat('channelsLast');
  measure('channels-last weights', dtype);
  unet.toMemoryFormat('contiguous');
  const all = torch.sdpBackends();
  for (const only of torch.SDP_BACKENDS) {
    if (device === 'cpu' && (only === 'efficient' || only === 'cudnn')) continue; // CUDA kernels
    torch.sdpBackends(Object.fromEntries(torch.SDP_BACKENDS.map((b) => [b, b === only])));
    measure(`SDPA: ${only} only`, dtype);
  }
  torch.sdpBackends(all);
  measure('float32, TF32 off', null);
  torch.setAllowTF32(true);
  measure('float32, TF32 on', null);
  torch.setAllowTF32(false);
  for (const v of [x, ehs, t]) v.dispose();
  unet.dispose();
  return rows;
}

/** Stage d: bench/ddp.ts in child processes (it starts its own ranks); its table's rows. */
function ddpStage(rows: Row[]): string[] {
  const gpus = device === 'cuda' ? torch.cuda.deviceCount() : 2;
  if (gpus < 2) return [`data-parallel scaling: not measured, this machine has ${gpus} GPU (NCCL needs one GPU per process)`];
  if (!torch.distributed.availableBackends()[device === 'cuda' ? 'nccl' : 'gloo']) return ['data-parallel scaling: not measured, this build of the addon has no ' + (device === 'cuda' ? 'NCCL' : 'Gloo') + ' (see docs/distributed.md)'];
  const args = [join(root, 'dist', 'bench', 'ddp.js'), '--case', o.cpu ? 'mid' : 'sd15', '--device', device, '--procs', `1,${gpus}`, '--updates', o.cpu ? '2' : '6', '--rounds', '1'];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: o.budget * 2000, env: process.env });
  if (r.status !== 0) return [`data-parallel scaling failed: ${(r.stderr || r.stdout || String(r.error)).trim().split('\n').slice(-3).join(' | ')}`];
  for (const line of r.stdout.split('\n').filter((l) => /^\| \d/.test(l))) {
    const [procs, ours, comm, eff, ddp, ddpEff] = line.split('|').slice(1, 7).map((c) => c.trim());
    rows.push({ processes: Number(procs), ours_update_s: Number(ours), ours_comm_share: comm!, ours_efficiency: eff!, ddp_update_s: ddp === '-' ? null : Number(ddp), ddp_efficiency: ddpEff! });
  }
  return [r.stdout.split('\n')[0]!];
}

function buildVAEScale(model: string): number {
  const vc = cfg.models[model] ? cfg.models[model]!.vae : readConfig(join(fixtures, model, 'vae'));
  return (vc.block_out_channels as number[]).length;
}

function reference(stage: string, s: Stage): { rows: Row[]; note: string | null } {
  const pythonPath = process.env.DPO_DIFFUSERS_PYTHONPATH;
  if (!pythonPath) return { rows: [], note: 'the reference (diffusers 0.20) was not run: DPO_DIFFUSERS_PYTHONPATH is not set' };
  const r = spawnSync(process.env.DPO_PYTHON ?? 'python3', [join(root, 'bench', 'gpu_reference.py'), stage, JSON.stringify({ ...s, device, budget: o.budget, repeats: o.repeats, fixtures, cpu: o.cpu })], {
    encoding: 'utf8', env: { ...process.env, PYTHONPATH: pythonPath, PYTHONUNBUFFERED: '1' }, maxBuffer: 1 << 24,
  });
  if (r.status !== 0) return { rows: [], note: `the reference failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}` };
  return { rows: JSON.parse(r.stdout.trim().split('\n').pop()!) as Row[], note: null };
}

for (const name of o.stages.split(',')) {
  const s = stages[name];
  const entry = { rows: [] as Row[], notes: [] as string[] };
  results.stages[name] = entry;
  if (name === 'd') {
    entry.notes.push(...ddpStage(entry.rows));
    save();
    continue;
  }
  if (!s) throw new Error(`unknown stage '${name}'`);
  const deadline = performance.now() + o.budget * 1000;
  try {
    entry.rows.push(...(name === 'c' ? samplingStage(s, deadline) : name === 'e' ? leverStage(s, deadline) : name === 'f' ? await dataStage(s, deadline) : trainingStage(s, deadline)));
  } catch (e) {
    entry.notes.push(`ours failed: ${(e as Error).message.split('\n')[0]}`);
  }
  save();
  if (name === 'e' || name === 'f') {
    entry.notes.push(name === 'e' ? 'ours only: each lever against the baseline of the same run' : 'ours only: the loader against a batch already on the device, in the same run');
    save();
    continue;
  }
  const ref = reference(name, s);
  entry.rows.push(...ref.rows);
  if (ref.note) entry.notes.push(ref.note);
  if (entry.rows.some((r) => Object.entries(r).some(([k, v]) => k.endsWith('_s') && v === null))) entry.notes.push('an empty time: not measured within the stage\'s time budget (--budget)');
  if (device === 'cpu') entry.notes.push('peak device memory is measured on CUDA only');
  save();
  console.error(`[gpu-bench] stage ${name} done`);
}
console.log(readFileSync(join(out, 'gpu-bench.md'), 'utf8'));
