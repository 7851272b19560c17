// Benchmark: UNet forward+backward and VAE encode, tiny and mid-size configs, ours against Python
// diffusers 0.20 on the same libtorch, interleaved. The Python side needs diffusers 0.20 importable:
// set DPO_DIFFUSERS_PYTHONPATH to its source folder (see docs/benchmarks.md).
//
//   npm run build && node dist/bench/models.js
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as torch from '../src/torch/index.js';
import { AutoencoderKL, UNet2DConditionModel, loadUNet, loadVAE } from '../src/models/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixtures = process.env.FIXTURES_DIR ?? join(root, '..', 'shared', 'fixtures');
const repeats = Number(process.env.DPO_BENCH_REPEATS ?? 5);
const rounds = Number(process.env.DPO_BENCH_ROUNDS ?? 2);
const threads = availableParallelism();
type Spec = { config: string | Record<string, unknown>; batch: number; latent?: number; context?: number; image?: number };
const cfg = JSON.parse(readFileSync(join(root, 'bench', 'models_config.json'), 'utf8')) as { unet: Record<string, Spec>; vae: Record<string, Spec> };

function best(fn: () => void): number {
  fn();
  let t = Infinity;
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    fn();
    t = Math.min(t, (performance.now() - t0) / 1000);
  }
  return t;
}

function ours(): { unet: Record<string, number>; vae: Record<string, number> } {
  torch.setNumThreads(threads);
  const out = { unet: {} as Record<string, number>, vae: {} as Record<string, number> };
  const g = new torch.Generator('cpu', 0);
  for (const [name, spec] of Object.entries(cfg.unet)) {
    const unet = typeof spec.config === 'string' ? loadUNet(join(fixtures, spec.config)) : new UNet2DConditionModel(spec.config);
    const x = torch.randn([spec.batch, unet.config.inChannels, spec.latent!, spec.latent!], { generator: g }).keep();
    const ehs = torch.randn([spec.batch, spec.context!, unet.config.crossAttentionDim[0]!], { generator: g }).keep();
    const t = torch.tensor([10, 500, ...new Array(Math.max(0, spec.batch - 2)).fill(999)].slice(0, spec.batch), { dtype: 'int64' }).keep();
    out.unet[name] = best(() => torch.tidy(() => {
      unet.zeroGrad();
      unet.forward(x, t, ehs).sample.float().pow(2).mean().backward();
    }));
    unet.zeroGrad();
    unet.dispose();
    [x, ehs, t].forEach((v) => v.dispose());
  }
  for (const [name, spec] of Object.entries(cfg.vae)) {
    const vae = typeof spec.config === 'string' ? loadVAE(join(fixtures, spec.config)) : new AutoencoderKL(spec.config);
    const img = torch.tidy(() => torch.rand([spec.batch, 3, spec.image!, spec.image!], { generator: g }).mul(2).sub(1).keep());
    out.vae[name] = best(() => torch.tidy(() => torch.noGrad(() => vae.encode(img).sample(g))));
    vae.dispose();
    img.dispose();
  }
  return out;
}

function python(): { diffusers: string; torch: string; unet: Record<string, number>; vae: Record<string, number> } {
  const pythonPath = process.env.DPO_DIFFUSERS_PYTHONPATH;
  if (!pythonPath) throw new Error('set DPO_DIFFUSERS_PYTHONPATH to a folder holding diffusers 0.20 (see docs/benchmarks.md)');
  const r = spawnSync(process.env.DPO_PYTHON ?? 'python3', [join(root, 'bench', 'models.py'), fixtures, String(threads), String(repeats)], {
    encoding: 'utf8', env: { ...process.env, PYTHONPATH: pythonPath },
  });
  if (r.status !== 0) throw new Error(`the Python reference failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

const oursRuns: ReturnType<typeof ours>[] = [];
const pyRuns: ReturnType<typeof python>[] = [];
for (let i = 0; i < rounds; i++) {
  pyRuns.push(python());
  oursRuns.push(ours());
}
const min = (xs: number[]) => Math.min(...xs);
console.log(`model benchmark: libtorch ${torch.buildInfo().torchVersion}, diffusers ${pyRuns[0]!.diffusers} (Python torch ${pyRuns[0]!.torch}), ` +
  `${cpus()[0]?.model ?? 'CPU'}, ${threads} threads; best of ${repeats} x ${rounds} interleaved rounds; ratio = ours / Python time\n`);
console.log('workload'.padEnd(36) + 'ours s'.padStart(10) + 'python s'.padStart(10) + 'ratio'.padStart(8));
for (const kind of ['unet', 'vae'] as const) {
  for (const name of Object.keys(cfg[kind])) {
    const o = min(oursRuns.map((r) => r[kind][name]!));
    const p = min(pyRuns.map((r) => r[kind][name]!));
    const label = kind === 'unet' ? `UNet fwd+bwd ${name}` : `VAE encode ${name}`;
    console.log(label.padEnd(36) + o.toFixed(4).padStart(10) + p.toFixed(4).padStart(10) + (o / p).toFixed(2).padStart(8));
  }
}
