// Benchmark: a DPO step's time from images (VAE encode of both images and the text encoder in the
// step) against the same step from a latent cache (posterior parameters and text conditioning
// read with the batch), for the mid-size config at 256 px and the full-size SD1.5 VAE + text
// encoder + UNet at 512 px, one pair. The step is forward and backward of the trained UNet and the
// reference UNet's forward (gradient checkpointing on for SD1.5, to fit this machine's memory);
// the optimizer update is the same either way and left out. Modes interleave, best of N. Also:
// pairs/s, and the cache's bytes per pair (both views of both images and the caption, as
// `diffusion-dpo cache` stores them, in float32 and in half precision). Ours only: the reference
// has no cache (bench/train-step.ts compares the step from images with train.py's).
//
//   npm run build && node dist/bench/latent-cache.js [mid] [sd15]     (DPO_BENCH_REPEATS=2)
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as torch from '../src/torch/index.js';
import { AutoencoderKL, CLIPTextModel, UNet2DConditionModel } from '../src/models/index.js';
import { NoiseSchedule, parseNoiseScheduleConfig } from '../src/schedulers/noise_schedule.js';
import { normalizePixelsOnDevice } from '../src/train/batch_inputs.js';
import { createDiffusionStep, type DiffusionModels, type StepBatch } from '../src/train/step.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const repeats = Number(process.env.DPO_BENCH_REPEATS ?? 2);
type Case = { unet: Record<string, unknown>; vae: Record<string, unknown>; text_encoder: Record<string, unknown>; scheduler: Record<string, unknown>; resolution: number; gradient_checkpointing: boolean };
const cases = JSON.parse(readFileSync(join(root, 'bench', 'latent_cache_config.json'), 'utf8')) as Record<string, Case>;
delete cases['//'];

function time(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return (performance.now() - t0) / 1000;
}

function run(name: string): void {
  const c = cases[name]!;
  torch.setNumThreads(availableParallelism());
  torch.manualSeed(0);
  const unet = new UNet2DConditionModel(c.unet).train();
  if (c.gradient_checkpointing) unet.enableGradientCheckpointing();
  const ref = new UNet2DConditionModel(c.unet).requiresGrad_(false).eval();
  const vae = new AutoencoderKL(c.vae).requiresGrad_(false).eval();
  const textEncoder = new CLIPTextModel(c.text_encoder).requiresGrad_(false).eval();
  const noise = new NoiseSchedule(parseNoiseScheduleConfig(c.scheduler));
  const models: DiffusionModels = { kind: 'sd', unet, refUnet: ref, vae, textEncoder, textEncoder2: null, tokenizer: null, tokenizer2: null, noise };
  const cfg = {
    method: 'dpo' as const, betaDpo: 5000, noiseOffset: 0, inputPerturbation: 0, timestepMode: 'default' as const, resolution: c.resolution,
    weightDtype: 'float32' as const, latentScalingFactor: vae.config.scalingFactor,
  };
  const fromImages = createDiffusionStep(models, cfg);
  const fromCache = createDiffusionStep({ ...models, vae: null, textEncoder: null }, cfg);
  const r = c.resolution;
  const g = new torch.Generator('cpu', 0);
  const pixels = torch.tidy(() => normalizePixelsOnDevice(torch.randint(0, 256, [1, 6, r, r], { generator: g, dtype: 'uint8' })).keep());
  const ids = torch.tensor([[49406, 320, 1125, 539, 320, 2368, 49407, ...Array<number>(70).fill(49407)]], { dtype: 'int64' });
  // what the cache holds for this pair: each image's posterior parameters, the caption's states
  const cached = torch.tidy(() => torch.noGrad(() => {
    const feed = torch.cat(pixels.chunk(2, 1), 0);
    const moments = vae.encode(feed).parameters;
    return { moments: torch.cat(moments.chunk(2, 0), 1).contiguous().keep(), text: textEncoder.forward(ids).lastHiddenState.keep() };
  }));
  const step = (fn: typeof fromImages, batch: StepBatch) => () => torch.tidy(() => {
    fn(batch).loss.backward();
    unet.zeroGrad();
  });
  const modes = {
    images: step(fromImages, { pixelValues: pixels, inputIds: ids }),
    cache: step(fromCache, { latentMoments: cached.moments, encoderHiddenStates: cached.text }),
  };
  const best: Record<string, number> = { images: Infinity, cache: Infinity };
  for (const fn of Object.values(modes)) fn(); // warm-up
  for (let i = 0; i < repeats; i++) for (const [mode, fn] of Object.entries(modes)) best[mode] = Math.min(best[mode]!, time(fn));
  const latent = r / 2 ** (vae.config.blockOutChannels.length - 1);
  const perPair = (bytes: number) => 2 /* images */ * 2 /* views */ * 2 * vae.config.latentChannels * latent * latent * bytes + 77 * textEncoder.config.hiddenSize * bytes;
  console.log(`${name} at ${r} px (1 pair${c.gradient_checkpointing ? ', gradient checkpointing' : ''}):`);
  console.log(`  from images  ${best.images!.toFixed(2)} s/step  ${(1 / best.images!).toFixed(3)} pairs/s`);
  console.log(`  from cache   ${best.cache!.toFixed(2)} s/step  ${(1 / best.cache!).toFixed(3)} pairs/s  (${(best.images! / best.cache!).toFixed(2)}x faster)`);
  console.log(`  cache bytes per pair: ${(perPair(4) / 1024).toFixed(0)} KiB float32, ${(perPair(2) / 1024).toFixed(0)} KiB fp16/bf16`);
  for (const t of [pixels, ids, cached.moments, cached.text]) t.dispose();
  for (const m of [unet, ref, vae, textEncoder]) m.dispose();
  noise.dispose();
}

console.log(`latent-cache benchmark: ${cpus()[0]?.model ?? 'CPU'}, ${availableParallelism()} threads, best of ${repeats}`);
for (const name of process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(cases)) run(name);
