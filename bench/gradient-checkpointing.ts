// Benchmark: UNet forward+backward with and without gradient checkpointing, ours against
// diffusers 0.20 (enable_gradient_checkpointing) on the same libtorch: time (best of N) and the
// peak resident memory above the built model (gradients plus activations), each measurement in a
// fresh process so that peaks do not carry over; rounds interleave Python and ours. Cases are in
// bench/checkpointing_config.json: the mid-size UNet at a 32x32 latent, and the full-size SD1.5
// UNet at a 32x32 latent (256 px), one pair.
//
//   npm run build && DPO_DIFFUSERS_PYTHONPATH=<diffusers 0.20 src> node dist/bench/gradient-checkpointing.js [case ...]
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as torch from '../src/torch/index.js';
import { UNet2DConditionModel } from '../src/models/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const repeats = Number(process.env.DPO_BENCH_REPEATS ?? 2);
const rounds = Number(process.env.DPO_BENCH_ROUNDS ?? 2);
const threads = availableParallelism();
type Spec = { config: Record<string, unknown>; batch: number; latent: number; context: number };
const cases = JSON.parse(readFileSync(join(root, 'bench', 'checkpointing_config.json'), 'utf8')) as Record<string, Spec>;
delete cases['//'];

interface Measurement {
  seconds: number;
  base_mb: number;
  peak_mb: number;
  params_mb: number;
}

const MB = 1024 * 1024;

/** One measurement in this process (the child side). */
function measure(name: string, mode: 'on' | 'off'): Measurement {
  torch.setNumThreads(threads);
  const spec = cases[name]!;
  torch.manualSeed(0);
  const unet = new UNet2DConditionModel(spec.config).train();
  if (mode === 'on') unet.enableGradientCheckpointing();
  const g = new torch.Generator('cpu', 0);
  const x = torch.randn([spec.batch, unet.config.inChannels, spec.latent, spec.latent], { generator: g }).keep();
  const ehs = torch.randn([spec.batch, spec.context, unet.config.crossAttentionDim[0]!], { generator: g }).keep();
  const t = torch.tensor([10, 500, 999, 999].slice(0, spec.batch), { dtype: 'int64' }).keep();
  const base = process.memoryUsage().rss / MB;
  let best = Infinity;
  for (let i = 0; i <= repeats; i++) {
    const t0 = performance.now();
    torch.tidy(() => {
      unet.zeroGrad();
      unet.forward(x, t, ehs).sample.float().pow(2).mean().backward();
    });
    if (i > 0) best = Math.min(best, (performance.now() - t0) / 1000);
  }
  const peak = (process.resourceUsage().maxRSS * 1024) / MB;
  return { seconds: best, base_mb: base, peak_mb: peak, params_mb: (unet.numParameters() * 4) / MB };
}

function child(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Measurement {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Measurement;
}

if (process.argv[2] === '--child') {
  console.log(JSON.stringify(measure(process.argv[3]!, process.argv[4] as 'on' | 'off')));
} else {
  const pythonPath = process.env.DPO_DIFFUSERS_PYTHONPATH;
  if (!pythonPath) throw new Error('set DPO_DIFFUSERS_PYTHONPATH to a folder holding diffusers 0.20 (see docs/benchmarks.md)');
  const names = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(cases);
  const runs: Record<string, { ours: Measurement[]; py: Measurement[] }> = {};
  for (let round = 0; round < rounds; round++) {
    for (const name of names) {
      for (const mode of ['off', 'on'] as const) {
        const key = `${name}/${mode}`;
        runs[key] ??= { ours: [], py: [] };
        runs[key].py.push(child(process.env.DPO_PYTHON ?? 'python3', [join(root, 'bench', 'gradient_checkpointing.py'), name, mode, String(threads), String(repeats)],
          { ...process.env, PYTHONPATH: pythonPath }));
        runs[key].ours.push(child(process.execPath, [fileURLToPath(import.meta.url), '--child', name, mode]));
        console.error(`round ${round + 1}/${rounds}: ${key} done`);
      }
    }
  }
  const bestOf = (ms: Measurement[]) => ({ seconds: Math.min(...ms.map((m) => m.seconds)), extra: Math.min(...ms.map((m) => m.peak_mb - m.base_mb)), params: ms[0]!.params_mb });
  console.log(`gradient checkpointing benchmark: libtorch ${torch.buildInfo().torchVersion}, ${cpus()[0]?.model ?? 'CPU'}, ${threads} threads; ` +
    `best of ${repeats} x ${rounds} interleaved rounds; memory = peak RSS above the built model (gradients + activations), min over rounds\n`);
  console.log('| case | side | time off (s) | time on (s) | time on/off | extra memory off (MB) | extra memory on (MB) | memory on/off | activations on/off |');
  console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  const results: Record<string, unknown> = {};
  for (const name of names) {
    for (const side of ['ours', 'py'] as const) {
      const off = bestOf(runs[`${name}/off`]![side]);
      const on = bestOf(runs[`${name}/on`]![side]);
      // the gradients (one float32 copy of the parameters) are the same with and without checkpointing
      const act = (m: typeof off) => m.extra - m.params;
      results[`${name}/${side}`] = { off, on };
      console.log(`| ${name} | ${side === 'ours' ? 'ours' : 'diffusers 0.20'} | ${off.seconds.toFixed(3)} | ${on.seconds.toFixed(3)} | ${(on.seconds / off.seconds).toFixed(2)} | ` +
        `${off.extra.toFixed(0)} | ${on.extra.toFixed(0)} | ${(on.extra / off.extra).toFixed(2)} | ${(act(on) / act(off)).toFixed(2)} |`);
    }
  }
  console.log(`\n${JSON.stringify(results)}`);
}
