// `diffusion-dpo doctor`: what this installation runs on, and whether it is set up to run fast.
import { availableParallelism } from 'node:os';
import * as torch from '../torch/index.js';
import { flagsHelp } from '../util/flags.js';
import { HELP_FLAG, parseCommandFlags } from './args.js';
import type { Command } from './main.js';

const DOCTOR_FLAGS = {
  device: { type: 'string', default: null, multiple: true, valueName: 'D', help: 'also measure on D (e.g. cuda); default: cpu, and cuda when available' },
  json: { type: 'boolean', default: false, help: 'print the report as JSON' },
  ...HELP_FLAG,
} as const;

const HELP = `usage: diffusion-dpo doctor [--json] [--device DEVICE]

Reports the libtorch in use (version, path, BLAS, CUDA devices), the thread count, and a
1024x1024 float32 matmul throughput, with warnings for slow set-ups (a generic BLAS, one thread,
no CUDA where one was asked for).

options:
${flagsHelp(DOCTOR_FLAGS, { width: 16 })}`;

export interface DoctorReport {
  node: string;
  torch: { version: string; libDir: string; cxx11Abi: boolean; blas: string; mkl: boolean; mkldnn: boolean; openmp: boolean };
  threads: number;
  cores: number;
  cuda: { available: boolean; devices: number; names: string[] };
  /** The attention kernels scaled_dot_product_attention may pick, and the math settings. */
  sdpa: torch.SdpBackends;
  math: { tf32Matmul: boolean; tf32Cudnn: boolean; cudnnBenchmark: boolean; deterministic: boolean };
  matmulGflops: Record<string, number>;
  warnings: string[];
}

/**
 * GFLOP/s of an n x n float32 matmul (best of several timed runs after a warm-up). On CUDA the
 * matrices are larger (a 1024² matmul takes microseconds there, below what a launch costs) and
 * each run is timed to a synchronisation of that device.
 */
export function matmulGflops(device: torch.Device, n?: number, repeats?: number): number {
  const cuda = torch.deviceType(device) === 'cuda';
  const size = n ?? (cuda ? 8192 : 1024);
  const runs = repeats ?? (cuda ? 10 : 5);
  const index = cuda ? Number(device.split(':')[1] ?? 0) : 0;
  return torch.tidy(() => {
    const a = torch.randn([size, size], { device });
    const b = torch.randn([size, size], { device });
    const sync = () => (cuda ? torch.cuda.synchronize(index) : undefined);
    a.matmul(b).dispose();
    sync();
    let best = Infinity;
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      a.matmul(b).dispose();
      sync();
      best = Math.min(best, performance.now() - t0);
    }
    return (2 * size ** 3) / (best / 1000) / 1e9;
  });
}

function blasOf(config: string): string {
  const m = config.match(/BLAS_INFO=([^,\s]+)/);
  return m ? m[1]! : 'unknown';
}

export function doctorReport(devices: torch.Device[]): DoctorReport {
  const info = torch.buildInfo();
  const warnings: string[] = [];
  const blas = blasOf(info.config);
  if (!/mkl|open|blis|accelerate|flexi/i.test(blas)) {
    warnings.push(`libtorch uses the BLAS '${blas}': a generic reference BLAS is 30x slower (on Debian: apt-get install libopenblas0-pthread, or use the pip torch)`);
  }
  const threads = torch.getNumThreads();
  const cores = availableParallelism();
  if (threads === 1 && cores > 1) warnings.push(`libtorch runs on 1 thread of ${cores} cores (DPO_NUM_THREADS or OMP_NUM_THREADS is set to 1?)`);
  const missing = torch.cudaExpectedButMissing();
  if (missing) warnings.push(`${missing}: training and sampling would run on the CPU`);
  const matmul: Record<string, number> = {};
  for (const d of devices) {
    if (d.startsWith('cuda') && !info.cudaAvailable) {
      warnings.push(`${d} was asked for but this libtorch sees no CUDA device (a CPU-only build, or no driver)`);
      continue;
    }
    matmul[d] = matmulGflops(d);
  }
  if (matmul.cpu !== undefined && matmul.cpu < 20) warnings.push(`CPU matmul reaches only ${matmul.cpu.toFixed(1)} GFLOP/s`);
  return {
    node: process.version,
    torch: { version: info.torchVersion, libDir: info.torchLibDir, cxx11Abi: info.cxx11Abi, blas, mkl: info.mkl, mkldnn: info.mkldnn, openmp: info.openmp },
    threads,
    cores,
    cuda: { available: info.cudaAvailable, devices: info.cudaDeviceCount, names: Array.from({ length: info.cudaDeviceCount }, (_, i) => torch.describeDevice(`cuda:${i}`)) },
    sdpa: torch.sdpBackends(),
    math: torch.mathSettings(),
    matmulGflops: matmul,
    warnings,
  };
}

export const doctorCommand: Command = {
  summary: 'report the libtorch, devices, threads and matmul speed, with warnings',
  run(argv) {
    const { values } = parseCommandFlags('doctor', DOCTOR_FLAGS, argv);
    if (values.help) {
      console.log(HELP);
      return 0;
    }
    const devices = values.device.length ? values.device : torch.cuda.isAvailable() ? ['cpu', 'cuda'] : ['cpu'];
    const r = doctorReport(devices);
    if (values.json) {
      console.log(JSON.stringify(r, null, 2));
      return 0;
    }
    const lines = [
      `diffusion-dpo doctor`,
      `  node          ${r.node}`,
      `  libtorch      ${r.torch.version}  (${r.torch.libDir})`,
      `  blas          ${r.torch.blas}${r.torch.mkldnn ? ', oneDNN' : ''}${r.torch.openmp ? ', OpenMP' : ''}`,
      `  threads       ${r.threads} of ${r.cores} cores`,
      `  cuda          ${r.cuda.available ? `${r.cuda.devices} device(s)` : 'not available'}`,
      ...r.cuda.names.map((n) => `                ${n}`),
      `  attention     SDPA kernels enabled: ${Object.entries(r.sdpa).filter(([, on]) => on).map(([k]) => k).join(', ')} (CUDA has all four; the CPU flash and math)`,
      `  math          TF32 ${r.math.tf32Matmul ? 'on' : 'off'} (matmul), ${r.math.tf32Cudnn ? 'on' : 'off'} (cuDNN); cuDNN benchmark ${r.math.cudnnBenchmark ? 'on' : 'off'}; deterministic ${r.math.deterministic ? 'on' : 'off'}`,
      ...Object.entries(r.matmulGflops).map(([d, g]) => `  matmul        ${g.toFixed(1)} GFLOP/s on ${d} (${d.startsWith('cuda') ? '8192²' : '1024²'} float32)`),
    ];
    console.log(lines.join('\n'));
    if (r.warnings.length) console.log(`\nwarnings:\n${r.warnings.map((w) => `  - ${w}`).join('\n')}`);
    else console.log('\nno warnings: this set-up is ready.');
    return 0;
  },
};
