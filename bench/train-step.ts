// Benchmark: seconds per Diffusion-DPO optimizer step (tiny and mid-size configs, 1 and 4 pairs
// per step), ours against train.py's step logic run by diffusers 0.20 on the same libtorch, in
// one run; peak RSS of both processes. Text conditioning is a fixed random tensor on both sides.
//   DPO_DIFFUSERS_PYTHONPATH=<diffusers 0.20> node dist/bench/train-step.js
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as torch from '../src/torch/index.js';
import { AutoencoderKL, UNet2DConditionModel, loadUNet, loadVAE } from '../src/models/index.js';
import { loadNoiseScheduleConfig, NoiseSchedule } from '../src/schedulers/noise_schedule.js';
import { createDiffusionStep, type DiffusionModels } from '../src/train/step.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixtures = process.env.FIXTURES_DIR ?? join(root, '..', 'shared', 'fixtures');
const repeats = Number(process.env.DPO_BENCH_REPEATS ?? 3);
const threads = availableParallelism();
const cfg = JSON.parse(readFileSync(join(root, 'bench', 'models_config.json'), 'utf8')) as { unet: Record<string, { config: string | Record<string, unknown> }>; vae: Record<string, { config: string | Record<string, unknown> }> };

function ours(): Record<string, number> {
  torch.setNumThreads(threads);
  const out: Record<string, number> = {};
  const noise = new NoiseSchedule(loadNoiseScheduleConfig(join(fixtures, 'tiny-sd', 'scheduler')));
  for (const [name, res] of [['tiny', 32], ['mid', 256]] as const) {
    const uc = cfg.unet[name]!.config;
    const vc = cfg.vae[name]!.config;
    const unet = typeof uc === 'string' ? loadUNet(join(fixtures, uc)) : new UNet2DConditionModel(uc);
    const ref = typeof uc === 'string' ? loadUNet(join(fixtures, uc)) : new UNet2DConditionModel(uc);
    ref.loadStateDict(unet.stateDict());
    ref.requiresGrad_(false).eval();
    const vae = typeof vc === 'string' ? loadVAE(join(fixtures, vc)) : new AutoencoderKL(vc);
    vae.requiresGrad_(false);
    const opt = new torch.optim.AdamW(unet.parameters(), { lr: 1e-5 });
    const m: DiffusionModels = { kind: 'sd', unet, refUnet: ref, vae, textEncoder: null, textEncoder2: null, tokenizer: null, tokenizer2: null, noise };
    for (const bsz of [1, 4]) {
      const g = new torch.Generator('cpu', 0);
      const pixels = torch.tidy(() => torch.rand([bsz, 6, res, res], { generator: g }).mul(2).sub(1).keep());
      const ehs = torch.randn([bsz, 77, unet.config.crossAttentionDim[0]!], { generator: g }).keep(); // per caption: the step repeats it for the pair
      const dpoStep = createDiffusionStep(m, {
        method: 'dpo', betaDpo: 5000, noiseOffset: 0, inputPerturbation: 0, timestepMode: 'default', resolution: res, weightDtype: 'float32',
      });
      const step = () => torch.tidy(() => {
        const r = dpoStep({ pixelValues: pixels, encoderHiddenStates: ehs });
        r.loss.backward();
        torch.optim.clipGradNorm_(unet.parameters(), 1.0);
        opt.step();
        opt.zeroGrad();
      });
      step();
      let best = Infinity;
      for (let i = 0; i < repeats; i++) {
        const t0 = performance.now();
        step();
        best = Math.min(best, (performance.now() - t0) / 1000);
      }
      out[`${name}_b${bsz}`] = best;
      pixels.dispose();
      ehs.dispose();
    }
    opt.dispose();
    unet.dispose();
    ref.dispose();
    vae.dispose();
  }
  noise.dispose();
  out.peak_rss_mb = process.resourceUsage().maxRSS / 1024;
  return out;
}

function python(): Record<string, number> {
  const py = spawnSync(process.env.DPO_PYTHON ?? 'python3', [join(root, 'bench', 'train_step.py'), fixtures, String(threads), String(repeats)], {
    encoding: 'utf8', env: { ...process.env, PYTHONPATH: process.env.DPO_DIFFUSERS_PYTHONPATH ?? '' },
  });
  if (py.status !== 0) throw new Error(`the Python reference failed (set DPO_DIFFUSERS_PYTHONPATH to diffusers 0.20): ${py.stderr}`);
  return JSON.parse(py.stdout.trim().split('\n').pop()!) as Record<string, number>;
}

// interleaved rounds, best of each: background load hits both sides alike
const rounds = Number(process.env.DPO_BENCH_ROUNDS ?? 2);
const best = (runs: Record<string, number>[]) => Object.fromEntries(Object.keys(runs[0]!).map((k) => [k, k === 'peak_rss_mb' ? Math.max(...runs.map((r) => r[k]!)) : Math.min(...runs.map((r) => r[k]!))]));
const pyRuns: Record<string, number>[] = [];
const ourRuns: Record<string, number>[] = [];
for (let i = 0; i < rounds; i++) {
  pyRuns.push(python());
  ourRuns.push(ours());
}
const ref = best(pyRuns);
const o = best(ourRuns);
console.log(`DPO step benchmark: ${cpus()[0]?.model ?? 'CPU'}, ${threads} threads, best of ${repeats} x ${rounds} interleaved rounds; ratio = ours / Python time\n`);
console.log('config'.padEnd(28) + 'ours s'.padStart(10) + 'python s'.padStart(10) + 'ratio'.padStart(8));
for (const k of ['tiny_b1', 'tiny_b4', 'mid_b1', 'mid_b4']) {
  console.log(k.padEnd(28) + o[k]!.toFixed(4).padStart(10) + ref[k]!.toFixed(4).padStart(10) + (o[k]! / ref[k]!).toFixed(2).padStart(8));
}
console.log(`peak RSS: ours ${o.peak_rss_mb!.toFixed(0)} MB, python ${ref.peak_rss_mb!.toFixed(0)} MB`);
