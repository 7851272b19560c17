// `diffusion-dpo launch`: torchrun for our trainer. Starts --nproc_per_node processes of a command
// on this node with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT, GROUP_RANK), forwards SIGINT/SIGTERM to them (each saves a checkpoint
// at the end of the update and stops), and when one fails stops the others and exits with the
// first failure's code, showing its last lines.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CliError } from './errors.js';
import type { Command } from './main.js';

const HELP = `usage: diffusion-dpo launch --nproc_per_node N [--nnodes K --node_rank R --master_addr A --master_port P] train [train flags...]

Starts N training processes on this node, as torchrun does: process i gets LOCAL_RANK i (its GPU,
cuda:i) and RANK node_rank x N + i of WORLD_SIZE K x N; they meet at master_addr:master_port (rank
0's node), and average gradients over NCCL (GPUs) or Gloo (CPU). Run the same command on every
node with its own --node_rank. SIGINT/SIGTERM are passed to every process: each saves a checkpoint
at the end of the update and stops. If a process fails, the others are stopped and launch exits
with its code, printing its last lines. Output: rank 0's as is, the others' prefixed [rank r].

options:
  --nproc_per_node N   processes on this node (default 1; on GPUs, one per GPU)
  --nnodes K           nodes in the job (default 1)
  --node_rank R        this node's index, 0..K-1 (default 0)
  --master_addr A      rank 0's host (default 127.0.0.1; required with --nnodes > 1)
  --master_port P      rank 0's port (default: a free port on a single node, 29500 across nodes)
  -h, --help           this text

The trainer also runs under torchrun (torchrun --no-python --nproc_per_node N node bin/diffusion-dpo.js
train ...) and under SLURM's srun (one task per GPU), reading their variables.`;

const GRACE_MS = 5000;
const TAIL_LINES = 30;

interface LaunchOptions {
  nprocPerNode: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number | null;
  command: string[];
}

function parseLaunchArgs(argv: string[]): LaunchOptions {
  const o: LaunchOptions = { nprocPerNode: 1, nnodes: 1, nodeRank: 0, masterAddr: '127.0.0.1', masterPort: null, command: [] };
  let addrGiven = false;
  let i = 0;
  const int = (flag: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < min) throw new CliError(`${flag} needs an integer >= ${min}, got '${v ?? ''}'`, 2);
    return n;
  };
  for (; i < argv.length && argv[i]!.startsWith('-'); i++) {
    const [flag, inline] = argv[i]!.includes('=') ? argv[i]!.split(/=(.*)/s, 2) as [string, string] : [argv[i]!, undefined];
    const name = flag.replace(/^--?/, '').replace(/-/g, '_');
    const value = () => inline ?? argv[++i];
    if (name === 'nproc_per_node') o.nprocPerNode = int(flag, value(), 1);
    else if (name === 'nnodes') o.nnodes = int(flag, value(), 1);
    else if (name === 'node_rank') o.nodeRank = int(flag, value(), 0);
    else if (name === 'master_addr') { o.masterAddr = value() ?? ''; addrGiven = true; }
    else if (name === 'master_port') o.masterPort = int(flag, value(), 1);
    else throw new CliError(`launch: unknown option ${flag} (launch's options come before the command; see diffusion-dpo launch --help)`, 2);
  }
  o.command = argv.slice(i);
  if (o.command.length === 0) throw new CliError('launch needs a command to run, e.g. diffusion-dpo launch --nproc_per_node 2 train ...', 2);
  if (!['train', 'demo'].includes(o.command[0]!)) throw new CliError(`launch runs train or demo, not '${o.command[0]}'`, 2);
  if (o.nodeRank >= o.nnodes) throw new CliError(`--node_rank ${o.nodeRank} is outside --nnodes ${o.nnodes}`, 2);
  if (o.nnodes > 1 && !addrGiven) throw new CliError('--nnodes > 1 needs --master_addr, the address of node 0 (where rank 0 runs)', 2);
  if (o.masterPort !== null && o.masterPort > 65535) throw new CliError(`--master_port ${o.masterPort} is not a port`, 2);
  return o;
}

/** A port free on this host now (torchrun --standalone does the same). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Passes a child's output through line by line (prefixed for ranks > 0) and keeps its last lines. */
function relay(stream: NodeJS.ReadableStream, out: NodeJS.WriteStream, prefix: string, tail: string[]): void {
  let partial = '';
  stream.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop()!;
    for (const l of lines) {
      out.write(`${prefix}${l}\n`);
      tail.push(l);
      if (tail.length > TAIL_LINES) tail.shift();
    }
  });
  stream.on('end', () => {
    if (partial) {
      out.write(`${prefix}${partial}\n`);
      tail.push(partial);
    }
  });
}

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGSEGV: 11, SIGTERM: 15, SIGABRT: 6 };

export async function launch(o: LaunchOptions): Promise<number> {
  const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bin', 'diffusion-dpo.js');
  const port = o.masterPort ?? (o.nnodes === 1 ? await freePort() : 29500);
  const world = o.nnodes * o.nprocPerNode;
  // as torchrun: one thread team per process unless the user chose (N processes x all cores oversubscribe the CPU)
  const threads = process.env.DPO_NUM_THREADS ?? process.env.OMP_NUM_THREADS ?? String(Math.max(1, Math.floor(availableParallelism() / o.nprocPerNode)));
  console.error(`[launch] ${o.nprocPerNode} process(es) on node ${o.nodeRank} of ${o.nnodes} (world size ${world}), rendezvous at ${o.masterAddr}:${port}, ${threads} thread(s) each`);
  const children: { rank: number; proc: ChildProcess; tail: string[]; exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> }[] = [];
  for (let local = 0; local < o.nprocPerNode; local++) {
    const rank = o.nodeRank * o.nprocPerNode + local;
    const env = {
      ...process.env, RANK: String(rank), WORLD_SIZE: String(world), LOCAL_RANK: String(local), LOCAL_WORLD_SIZE: String(o.nprocPerNode),
      GROUP_RANK: String(o.nodeRank), MASTER_ADDR: o.masterAddr, MASTER_PORT: String(port), DPO_NUM_THREADS: threads,
    };
    const proc = spawn(process.execPath, [bin, ...o.command], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    const prefix = rank === 0 ? '' : `[rank ${rank}] `;
    relay(proc.stdout!, process.stdout, prefix, []);
    relay(proc.stderr!, process.stderr, prefix, tail);
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      proc.on('exit', (code, signal) => resolve({ code, signal }));
      // a process that could not start: a failure of its rank, with the reason
      proc.on('error', (e) => {
        tail.push(`could not start: ${e.message}`);
        resolve({ code: 1, signal: null });
      });
    });
    children.push({ rank, proc, tail, exit });
  }

  // signals go to every process: each stops at the end of its update (a second one: at once; a
  // third kills them). SIGHUP (a closed terminal or session) stops them as SIGTERM does.
  let signalled: NodeJS.Signals | null = null;
  let forwarded = 0;
  const forward = (sig: NodeJS.Signals) => {
    signalled = sig === 'SIGHUP' ? 'SIGTERM' : sig;
    forwarded++;
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill(forwarded >= 3 ? 'SIGKILL' : signalled);
  };
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((sig) => [sig, () => forward(sig)] as const);
  for (const [sig, h] of handlers) process.on(sig, h);

  let failure: { rank: number; code: number; why: string; tail: string[] } | null = null;
  let stopTimer: NodeJS.Timeout | null = null;
  try {
    await Promise.all(children.map(async (c) => {
      const { code, signal } = await c.exit;
      const exitCode = code ?? 128 + (SIGNAL_NUMBERS[signal ?? ''] ?? 1);
      if (exitCode === 0 || failure) return;
      // a process stopped by a signal we forwarded exits 130/143: that is the job stopping, not a failure
      if (signalled && (exitCode === 130 || exitCode === 143)) return;
      failure = { rank: c.rank, code: exitCode, why: signal ? `was killed by ${signal}` : `exited with code ${code}`, tail: c.tail };
      // stop the others: SIGTERM, then SIGKILL after a grace period
      for (const other of children) if (other !== c && other.proc.exitCode === null && other.proc.signalCode === null) other.proc.kill('SIGTERM');
      stopTimer = setTimeout(() => {
        for (const other of children) if (other.proc.exitCode === null && other.proc.signalCode === null) other.proc.kill('SIGKILL');
      }, GRACE_MS);
    }));
  } finally {
    if (stopTimer) clearTimeout(stopTimer);
    for (const [sig, h] of handlers) process.removeListener(sig, h);
  }
  const f = failure as { rank: number; code: number; why: string; tail: string[] } | null;
  if (f) {
    console.error(`[launch] rank ${f.rank} ${f.why}; the other processes were stopped. Its last lines:\n${f.tail.map((l) => `  ${l}`).join('\n')}`);
    return f.code;
  }
  if (signalled) return signalled === 'SIGINT' ? 130 : 143;
  return 0;
}

export const launchCommand: Command = {
  summary: 'multi-process training on this node (torchrun\'s environment): launch --nproc_per_node N train ...',
  async run(argv) {
    if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h') {
      console.log(HELP);
      return 0;
    }
    return launch(parseLaunchArgs(argv));
  },
};
