// Benchmark: seconds per image, SD 1.5 architecture with random weights (the same weights on both
// sides, written once by the Python side), PNDM, guidance 7.5 (a doubled UNet batch), precomputed
// prompt embeddings, VAE decode to 8-bit pixels; ours against diffusers 0.20's
// StableDiffusionPipeline on the same libtorch, in interleaved rounds. Text encoding is left out on
// both sides (one CLIP forward per image, under 1% of the time; the reference environment has no
// transformers). Defaults are the CPU workload (256², 10 steps); on a GPU: DPO_BENCH_SIZE=512
// DPO_BENCH_STEPS=25 DPO_BENCH_DEVICE=cuda.
//
//   DPO_DIFFUSERS_PYTHONPATH=<diffusers 0.20 src> node dist/bench/sampling.js
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as torch from '../src/torch/index.js';
import { loadUNet, loadVAE, type PipelineComponents } from '../src/models/index.js';
import { generate } from '../src/pipelines/text_to_image.js';
import { schedulerFromConfig } from '../src/schedulers/samplers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const arch = join(process.env.FIXTURES_DIR ?? join(root, '..', 'shared', 'fixtures'), 'architectures');
const dir = process.env.DPO_BENCH_DIR ?? join(tmpdir(), 'dpo-bench-sd15-random');
const size = Number(process.env.DPO_BENCH_SIZE ?? 256);
const steps = Number(process.env.DPO_BENCH_STEPS ?? 10);
const repeats = Number(process.env.DPO_BENCH_REPEATS ?? 1);
const rounds = Number(process.env.DPO_BENCH_ROUNDS ?? 2);
const device = process.env.DPO_BENCH_DEVICE ?? 'cpu';
const threads = availableParallelism();

function python(...args: string[]): string {
  const pythonPath = process.env.DPO_DIFFUSERS_PYTHONPATH;
  if (!pythonPath) throw new Error('set DPO_DIFFUSERS_PYTHONPATH to a folder holding diffusers 0.20 (see docs/benchmarks.md)');
  const r = spawnSync(process.env.DPO_PYTHON ?? 'python3', [join(root, 'bench', 'sampling.py'), ...args], {
    encoding: 'utf8', env: { ...process.env, PYTHONPATH: pythonPath }, maxBuffer: 1 << 24,
  });
  if (r.status !== 0) throw new Error(`the Python reference failed: ${r.stderr}`);
  return r.stdout.trim().split('\n').pop() ?? '';
}

if (!existsSync(join(dir, 'unet', 'config.json'))) {
  console.error(`writing random SD 1.5 weights to ${dir} ...`);
  python('prepare', dir, arch);
}

function ours(): number {
  torch.setNumThreads(threads);
  const p: PipelineComponents = {
    kind: 'sd', index: {}, folder: dir, textEncoder: null, textEncoder2: null,
    unet: loadUNet(join(dir, 'unet'), { device }), vae: loadVAE(join(dir, 'vae'), { device }),
  };
  const schedulerConfig = JSON.parse(readFileSync(join(dir, 'scheduler', 'scheduler_config.json'), 'utf8')) as Record<string, unknown>;
  const g = new torch.Generator('cpu', 0);
  const cond = torch.randn([1, 77, 768], { generator: g }).keep();
  const uncond = torch.randn([1, 77, 768], { generator: g }).keep();
  const image = (n: number) => torch.tidy(() => {
    const r = generate({ pipeline: p, scheduler: schedulerFromConfig(schedulerConfig), tokenizer: null, tokenizer2: null }, {
      prompts: [''], embeds: { prompt: cond, negative: uncond }, numInferenceSteps: n, guidanceScale: 7.5,
      height: size, width: size, generator: new torch.Generator('cpu', 0),
    });
    r.images.mul(255).round().to('uint8').toTypedArray();
  });
  image(2); // warm-up
  let best = Infinity;
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    image(steps);
    best = Math.min(best, (performance.now() - t0) / 1000);
  }
  p.unet.dispose();
  p.vae.dispose();
  cond.dispose();
  uncond.dispose();
  return best;
}

const oursRuns: number[] = [];
const pyRuns: { diffusers: string; torch: string; seconds: number }[] = [];
for (let i = 0; i < rounds; i++) {
  pyRuns.push(JSON.parse(python('time', dir, String(threads), String(size), String(steps), String(repeats))));
  oursRuns.push(ours());
}
const o = Math.min(...oursRuns);
const py = Math.min(...pyRuns.map((r) => r.seconds));
console.log(`sampling benchmark: SD 1.5 architecture (random weights), ${size}x${size}, ${steps} PNDM steps, guidance 7.5, ${device}; ` +
  `libtorch ${torch.buildInfo().torchVersion}, diffusers ${pyRuns[0]!.diffusers} (Python torch ${pyRuns[0]!.torch}), ${cpus()[0]?.model ?? 'CPU'}, ${threads} threads; ` +
  `best of ${repeats} x ${rounds} interleaved rounds\n`);
console.log('s/image'.padEnd(12) + 'ours'.padStart(10) + 'python'.padStart(10) + 'ratio'.padStart(8));
console.log(''.padEnd(12) + o.toFixed(2).padStart(10) + py.toFixed(2).padStart(10) + (o / py).toFixed(2).padStart(8));
