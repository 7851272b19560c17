// Benchmark: data-parallel scaling, ours (c10d through the addon, src/train/data_parallel.ts)
// against PyTorch's DistributedDataParallel (bench/ddp_reference.py, diffusers 0.20's UNet) on the
// same libtorch, with 1 and N processes of one thread each (weak scaling: the per-process batch is
// fixed). Per process and update: UNet forward + backward on its batch, the gradient average
// across processes (ours: bucketed all-reduce after backward; DDP: bucketed all-reduce overlapped
// with backward by its autograd hooks), AdamW. Reported per process count: seconds per update
// (median of the timed updates, best over interleaved rounds), the share of the update spent in
// the gradient average (ours; DDP's overlaps backward and is not separable), and the scaling
// efficiency t(1) / t(N). The config is bench/checkpointing_config.json's (mid: the mid-size UNet
// at a 32x32 latent, batch 2 per process); --device cuda runs it on GPUs with NCCL (GPU check d).
//
//   npm run build && DPO_DIFFUSERS_PYTHONPATH=<diffusers 0.20 src> node dist/bench/ddp.js [--case mid] [--procs 1,2] [--updates 6] [--rounds 2] [--device cpu]
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as torch from '../src/torch/index.js';
import { UNet2DConditionModel } from '../src/models/index.js';
import { DataParallel, processLayout } from '../src/train/data_parallel.js';
import { freePort } from '../src/cli/launch.js';
import { parseFlags } from '../src/util/flags.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values: o } = parseFlags({
  case: { type: 'string', default: 'mid', help: 'bench/checkpointing_config.json case' },
  procs: { type: 'string', default: '1,2', help: 'process counts' },
  updates: { type: 'int', default: 6, min: 2, help: 'timed updates per run (after one warm-up)' },
  rounds: { type: 'int', default: 2, min: 1, help: 'interleaved rounds (best of)' },
  device: { type: 'string', default: 'cpu', help: 'cpu, or cuda (process i on cuda:i, NCCL)' },
  worker: { type: 'string', default: null, help: 'internal: run as one process of a measurement (ours)' },
  bucket_mb: { type: 'float', default: 25, help: 'gradient bucket size' },
}, process.argv.slice(2));

type Spec = { config: Record<string, unknown>; batch: number; latent: number; context: number };
const spec = (JSON.parse(readFileSync(join(root, 'bench', 'checkpointing_config.json'), 'utf8')) as Record<string, Spec>)[o.case];
if (!spec) throw new Error(`no case '${o.case}' in bench/checkpointing_config.json`);

interface Result { update_s: number; comm_s: number | null }

async function worker(): Promise<void> {
  const layout = processLayout(process.env);
  const device: torch.Device = o.device === 'cuda' ? `cuda:${layout.localRank}` : 'cpu';
  torch.manualSeed(0);
  const unet = new UNet2DConditionModel(spec!.config).to(device).train();
  const params = unet.parameters();
  const dp = layout.worldSize > 1 ? await DataParallel.start(layout, device, { timeoutMs: 600_000, bucketBytes: o.bucket_mb * 2 ** 20 }) : null;
  if (dp) await dp.broadcastFromRankZero(params);
  const opt = new torch.optim.AdamW(params, { lr: 1e-5, fused: device !== 'cpu' });
  const g = new torch.Generator('cpu', 1 + layout.rank);
  const cfg = spec!.config as { in_channels: number; cross_attention_dim: number };
  const x = torch.randn([spec!.batch, cfg.in_channels, spec!.latent, spec!.latent], { generator: g }).to({ device });
  const ehs = torch.randn([spec!.batch, spec!.context, cfg.cross_attention_dim], { generator: g }).to({ device });
  const t = torch.tensor(Array.from({ length: spec!.batch }, (_, i) => 100 + 300 * i), { dtype: 'int64' }).to({ device });
  const sync = () => { if (device !== 'cpu') torch.cuda.synchronize(layout.localRank); };
  const times: number[] = [];
  const comms: number[] = [];
  for (let i = 0; i <= o.updates; i++) {
    sync();
    const t0 = performance.now();
    torch.tidy(() => unet.forward(x, t, ehs).sample.pow(2).mean().backward());
    if (dp) await dp.averageGradients(params);
    opt.step();
    opt.zeroGrad();
    sync();
    if (i > 0) {
      times.push((performance.now() - t0) / 1000);
      comms.push(dp ? dp.takeCommSeconds() : 0);
    } else dp?.takeCommSeconds();
  }
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
  if (layout.rank === 0) console.log(JSON.stringify({ update_s: median(times), comm_s: dp ? median(comms) : 0 } satisfies Result));
  dp?.destroy();
}

/** One measurement: `procs` processes of `argv`, with torchrun's variables; rank 0's last JSON line. */
async function measure(argv: string[], procs: number, env: Record<string, string> = {}): Promise<Result> {
  const port = String(await freePort());
  const runs = Array.from({ length: procs }, (_, rank) => new Promise<string>((resolve, reject) => {
    const p = spawn(argv[0]!, argv.slice(1), {
      env: { ...process.env, ...env, RANK: String(rank), WORLD_SIZE: String(procs), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(procs),
        MASTER_ADDR: '127.0.0.1', MASTER_PORT: port, DPO_NUM_THREADS: '1', OMP_NUM_THREADS: '1' },
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${argv.join(' ')} rank ${rank}: exit ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`))));
  }));
  const outs = await Promise.all(runs);
  return JSON.parse(outs[0]!.trim().split('\n').pop()!) as Result;
}

async function main(): Promise<void> {
  const procs = o.procs.split(',').map(Number);
  const pythonPath = process.env.DPO_DIFFUSERS_PYTHONPATH;
  const ours = [process.execPath, fileURLToPath(import.meta.url), '--worker', '1', '--case', o.case, '--updates', String(o.updates), '--device', o.device, '--bucket_mb', String(o.bucket_mb)];
  const ref = [process.env.DPO_PYTHON ?? 'python3', join(root, 'bench', 'ddp_reference.py'), JSON.stringify({ case: o.case, updates: o.updates, device: o.device, bucket_mb: o.bucket_mb })];
  const best: Record<string, Result> = {};
  const keep = (key: string, r: Result) => {
    if (!best[key] || r.update_s < best[key]!.update_s) best[key] = r;
  };
  for (let round = 0; round < o.rounds; round++) {
    for (const p of procs) {
      keep(`ours ${p}`, await measure(ours, p));
      if (pythonPath) keep(`ddp ${p}`, await measure(ref, p, { PYTHONPATH: pythonPath }));
    }
  }
  console.log(`data-parallel scaling: ${o.case} UNet, batch ${spec!.batch} per process, ${o.device === 'cpu' ? `${cpus()[0]?.model ?? 'CPU'}, one thread per process` : 'CUDA'}; median of ${o.updates} updates, best of ${o.rounds} rounds`);
  console.log('| processes | ours s/update | ours comm share | ours efficiency | DDP s/update | DDP efficiency | ours / DDP time |');
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const p of procs) {
    const a = best[`ours ${p}`]!;
    const b = best[`ddp ${p}`];
    const eff = (x: Result | undefined, one: Result | undefined) => (x && one ? `${((one.update_s / x.update_s) * 100).toFixed(0)}%` : '-');
    console.log(`| ${p} | ${a.update_s.toFixed(3)} | ${((a.comm_s ?? 0) / a.update_s * 100).toFixed(1)}% | ${eff(a, best['ours 1'])} | ${b ? b.update_s.toFixed(3) : '-'} | ${eff(b, best['ddp 1'])} | ${b ? (a.update_s / b.update_s).toFixed(2) : '-'} |`);
  }
  if (!pythonPath) console.log('(DDP not run: set DPO_DIFFUSERS_PYTHONPATH to diffusers 0.20\'s src)');
}

if (o.worker) await worker();
else await main();
