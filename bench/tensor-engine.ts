// Benchmark: per-op dispatch overhead (100k small ops) and conv2d/matmul throughput, ours against
// Python calling the same libtorch (the torch package the addon is built against), interleaved
// in one run on one machine. Prints a table and writes bench/results/tensor-engine.json.
//
//   npm run bench                 (DPO_BENCH_REPEATS=5 by default)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as torch from '../src/torch/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const repeats = Number(process.env.DPO_BENCH_REPEATS ?? 5);
const rounds = Number(process.env.DPO_BENCH_ROUNDS ?? 3);
const N = 100_000;
const threadsSmall = 1;
const threadsKernels = availableParallelism();

function perOp(fn: (n: number) => void, n = N): number {
  let best = Infinity;
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    fn(n);
    best = Math.min(best, performance.now() - t0);
  }
  return (best / n) * 1000; // microseconds
}

function ours(): { small: Record<string, number>; kernels: Record<string, number> } {
  torch.setNumThreads(threadsSmall);
  const a = torch.ones([4]).keep();
  const b = torch.ones([4]).keep();
  const m = torch.ones([4, 4]).keep();
  // Each result is disposed as Python's refcount frees it; scopes batch 1,000 ops like a model step.
  const scoped = (body: () => void) => (n: number) => {
    for (let i = 0; i < n; i += 1000) torch.tidy(() => { for (let j = 0; j < 1000; j++) body(); });
  };
  const work: Record<string, (n: number) => void> = {
    add: (n) => { for (let i = 0; i < n; i++) a.add(b).dispose(); },
    add_scoped: scoped(() => a.add(b)),
    mul_scalar: (n) => { for (let i = 0; i < n; i++) a.mul(2.5).dispose(); },
    matmul_4x4: (n) => { for (let i = 0; i < n; i++) m.matmul(m).dispose(); },
    reshape: (n) => { for (let i = 0; i < n; i++) m.reshape(16).dispose(); },
    // five dependent ops as model code runs them: inside a step's scope
    chain5: (n) => {
      for (let i = 0; i < n; i += 1000) torch.tidy(() => { for (let j = 0; j < 1000; j += 5) torch.F.relu(a.add(b).mul(2.0).sub(1.0).sigmoid()); });
    },
  };
  const small: Record<string, number> = {};
  for (const [name, fn] of Object.entries(work)) {
    fn(1000);
    small[name] = perOp(fn);
  }
  a.dispose();
  b.dispose();
  m.dispose();

  torch.setNumThreads(threadsKernels);
  const gflops = (fn: () => torch.Tensor, flops: number, reps = 20) => {
    fn().dispose();
    let best = Infinity;
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      fn().dispose();
      best = Math.min(best, performance.now() - t0);
    }
    return flops / (best / 1000) / 1e9;
  };
  const kernels: Record<string, number> = {};
  torch.tidy(() => {
    const x = torch.randn([1024, 1024]);
    const y = torch.randn([1024, 1024]);
    kernels.matmul_1024 = gflops(() => x.matmul(y), 2 * 1024 ** 3);
    const img = torch.randn([8, 64, 64, 64]);
    const w = torch.randn([64, 64, 3, 3]);
    kernels['conv2d_8x64x64x64_k3'] = gflops(() => torch.F.conv2d(img, w, null, { padding: 1 }), 2 * 8 * 64 * 64 * 64 * 64 * 9);
  });
  return { small, kernels };
}

function python(): { torch: string; small: Record<string, number>; kernels: Record<string, number> } {
  const py = process.env.DPO_PYTHON ?? 'python3';
  const r = spawnSync(py, [join(root, 'bench', 'tensor_engine.py'), String(threadsSmall), String(threadsKernels), String(repeats)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`the Python reference failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** libtorch's own cost of one small op from C++ (bench/dispatch_floor.cc), or null without g++. */
function floor(): { direct: number; boxed: number } | null {
  const info = torch.buildInfo();
  const torchDir = join(info.torchLibDir, '..');
  const src = join(root, 'bench', 'dispatch_floor.cc');
  const exe = join(root, 'native', 'build', 'dispatch_floor');
  if (!existsSync(exe) || statSync(exe).mtimeMs < statSync(src).mtimeMs) {
    const cc = spawnSync('g++', ['-O2', '-std=c++17', src, `-I${torchDir}/include`, `-I${torchDir}/include/torch/csrc/api/include`,
      `-L${info.torchLibDir}`, '-ltorch', '-ltorch_cpu', '-lc10', `-Wl,-rpath,${info.torchLibDir}`, '-o', exe], { encoding: 'utf8' });
    if (cc.status !== 0) {
      console.error(`(no C++ floor: g++ failed: ${cc.stderr.split('\n')[0]})`);
      return null;
    }
  }
  const r = spawnSync(exe, [], { encoding: 'utf8' });
  return r.status === 0 ? JSON.parse(r.stdout) : null;
}

const best = (xs: number[], higherIsBetter: boolean) => (higherIsBetter ? Math.max(...xs) : Math.min(...xs));
const runsOurs: ReturnType<typeof ours>[] = [];
const runsPy: ReturnType<typeof python>[] = [];
const floors: { direct: number; boxed: number }[] = [];
for (let i = 0; i < rounds; i++) {
  runsPy.push(python());
  runsOurs.push(ours());
  const f = floor();
  if (f) floors.push(f);
}
const info = torch.buildInfo();
const rows: { workload: string; unit: string; ours: number; python: number; ratio: number }[] = [];
for (const name of Object.keys(runsOurs[0]!.small)) {
  const pyName = name === 'add_scoped' ? 'add' : name;
  const o = best(runsOurs.map((r) => r.small[name]!), false);
  const p = best(runsPy.map((r) => r.small[pyName]!), false);
  rows.push({ workload: `${name} (1 thread)`, unit: 'µs/op', ours: o, python: p, ratio: o / p });
}
if (floors.length) {
  const pyAdd = best(runsPy.map((r) => r.small.add!), false);
  const direct = best(floors.map((f) => f.direct), false);
  const boxed = best(floors.map((f) => f.boxed), false);
  rows.push({ workload: 'add, C++ at::add (floor)', unit: 'µs/op', ours: direct, python: pyAdd, ratio: direct / pyAdd });
  rows.push({ workload: 'add, C++ callBoxed (floor)', unit: 'µs/op', ours: boxed, python: pyAdd, ratio: boxed / pyAdd });
}
for (const name of Object.keys(runsOurs[0]!.kernels)) {
  const o = best(runsOurs.map((r) => r.kernels[name]!), true);
  const p = best(runsPy.map((r) => r.kernels[name]!), true);
  rows.push({ workload: `${name} (${threadsKernels} threads)`, unit: 'GFLOP/s', ours: o, python: p, ratio: o / p });
}
const machine = `${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores (${hostname()})`;
console.log(`tensor engine benchmark: libtorch ${info.torchVersion} (Python torch ${runsPy[0]!.torch}), ${machine}`);
console.log(`best of ${repeats} repeats x ${rounds} interleaved rounds; µs/op ratio = ours / Python (lower is better), GFLOP/s ratio = ours / Python (higher is better)\n`);
console.log('workload'.padEnd(34) + 'unit'.padEnd(9) + 'ours'.padStart(10) + 'python'.padStart(10) + 'ratio'.padStart(8));
for (const r of rows) {
  console.log(r.workload.padEnd(34) + r.unit.padEnd(9) + r.ours.toFixed(3).padStart(10) + r.python.toFixed(3).padStart(10) + r.ratio.toFixed(2).padStart(8));
}
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
writeFileSync(join(root, 'bench', 'results', 'tensor-engine.json'), JSON.stringify({ date: new Date().toISOString(), machine, torch: info.torchVersion, rows }, null, 2) + '\n');
