// Multi-process training on c10d (Gloo on the CPU), end to end: the collectives of the tensor
// layer on 3 processes; a rank that stops taking part fails the others within the timeout, naming
// the rank; training on 2 and 3 processes equals one process with the whole batch (--sample_seeds);
// SIGKILL of every process and a resume end bit-identical to an uninterrupted 2-process run; the
// launcher stops the job when a rank dies, and passes SIGTERM on; torchrun's and SLURM's variables.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { freePort } from '../src/cli/launch.js';
import { processLayout } from '../src/train/data_parallel.js';
import { writeTinyPipeline, writeWarmPreferenceSet } from './helpers/tiny_pipeline.js';
import { projectRoot } from './helpers/fixtures.js';
import { assertSameUNet, bin, metricsRows, runCli, runTrain } from './helpers/train_cli.js';

const haveGloo = torch.distributed.availableBackends().gloo;
// CI builds with gloo's headers and sets DPO_REQUIRE_DIST=1, so these tests cannot be skipped there
const skip = !haveGloo && process.env.DPO_REQUIRE_DIST !== '1' ? 'this build of the addon has no Gloo (gloo\'s headers were not found at build time)' : false;
const worker = join(projectRoot, 'dist', 'test', 'helpers', 'dist_worker.js');
const dir = mkdtempSync(join(tmpdir(), 'dpo-dist-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Exit { rank: number; code: number | null; signal: NodeJS.Signals | null; out: string; err: string }

function spawnRank(args: string[], env: Record<string, string>, rank: number): { pid: number; done: Promise<Exit> } {
  // a script runs under this node; anything else (python for torchrun) is its own command
  const [cmd, rest] = args[0]!.endsWith('.js') ? [process.execPath, args] : [args[0]!, args.slice(1)];
  const p = spawn(cmd, rest, { env: { ...process.env, DPO_NUM_THREADS: '1', ...env } });
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (err += d));
  return { pid: p.pid!, done: new Promise((resolve) => p.on('close', (code, signal) => resolve({ rank, code, signal, out, err }))) };
}

async function runRanks(size: number, args: string[], env: Record<string, string> = {}): Promise<Exit[]> {
  const port = String(await freePort());
  return Promise.all(Array.from({ length: size }, (_, rank) => spawnRank(args, {
    RANK: String(rank), WORLD_SIZE: String(size), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(size), MASTER_ADDR: '127.0.0.1', MASTER_PORT: port, ...env,
  }, rank).done));
}

function lastJson(e: Exit): Record<string, unknown> {
  assert.equal(e.code, 0, `rank ${e.rank}: ${e.err}`);
  return JSON.parse(e.out.trim().split('\n').pop()!) as Record<string, unknown>;
}

describe('c10d collectives (Gloo)', { skip }, () => {
  test('allReduce, broadcast, allGather, reduceScatter, barrier and the store on 3 processes', async () => {
    const results = (await runRanks(3, [worker, 'collectives'])).map(lastJson);
    for (const [r, x] of results.entries()) {
      assert.deepEqual(x.sum, [6, 60]);
      assert.deepEqual(x.max, [2]);
      assert.deepEqual(x.b, [42, 1], 'rank 1 broadcast its tensor');
      assert.deepEqual(x.gathered, [[0, 0], [1, 1], [2, 4]]);
      assert.deepEqual(x.scattered, [300 * r + 3], 'rank r gets the sum of every rank\'s input r');
      assert.equal(x.peer, `from ${(r + 1) % 3}`);
      assert.equal(x.added, true);
    }
  });

  test('a rank that does not take part fails the collective within the timeout, naming the rank', async () => {
    const [zero] = await runRanks(2, [worker, 'absent'], { TEST_TIMEOUT_MS: '2000' });
    const x = lastJson(zero!);
    assert.match(String(x.error), /^rank 0 of 2: gloo allReduce\(sum\): .*no answer within 2 s/);
    assert.ok((x.seconds as number) < 15, `failed after ${x.seconds} s`);
  });

  test('GradientReducer: buckets start during backward (hooks), and the gradients become the average; accumulation and no arm too', async () => {
    for (const x of (await runRanks(2, [worker, 'reducer'])).map(lastJson)) {
      const { buckets, armed, accumulated, after } = x as { buckets: number; armed: { early: number; maxDiff: number }; accumulated: { early: number; maxDiff: number }; after: { early: number; maxDiff: number } };
      assert.equal(armed.early, buckets, 'every bucket started during the armed backward');
      assert.equal(accumulated.early, buckets, 'the last of three accumulated backwards started them all');
      assert.equal(after.early, 0, 'without an arm, nothing starts during backward');
      for (const r of [armed, accumulated, after]) assert.ok(r.maxDiff <= 1e-6, `gradients vs the average: ${r.maxDiff}`);
    }
  });

  test('Gloo has no avg reduction: refused with a message', async () => {
    for (const x of (await runRanks(2, [worker, 'avg-on-gloo'])).map(lastJson)) assert.match(String(x.error), /Gloo has no avg reduction/);
  });
});

describe('data-parallel training', { skip }, () => {
  const model = join(dir, 'model');
  let data = '';
  before(async () => {
    writeTinyPipeline(model, 2);
    data = await writeWarmPreferenceSet(join(dir, 'data'), 16, 16, 5);
  });

  function flags(out: string, batch: number, extra: string[] = []): string[] {
    return ['--pretrained_model_name_or_path', model, '--dataset_name', data, '--output_dir', out, '--resolution', '16',
      '--train_batch_size', String(batch), '--max_train_steps', '3', '--learning_rate', '1e-3', '--lr_scheduler', 'constant',
      '--lr_warmup_steps', '0', '--checkpointing_steps', '2', '--mixed_precision', 'no', '--seed', '4', '--proportion_empty_prompts', '0.3', ...extra];
  }

  function launch(nproc: number, args: string[]) {
    return runCli(['launch', '--nproc_per_node', String(nproc), 'train', ...args]);
  }

  /** The largest absolute difference between two runs' UNets, and the largest change from the initial weights. */
  function weightDifference(a: string, b: string): { diff: number; moved: number } {
    return torch.tidy(() => {
      const load = (d: string) => torch.loadSafetensors(join(d, 'unet', 'diffusion_pytorch_model.safetensors'));
      const [x, y, init] = [load(a), load(b), load(model)];
      let diff = 0;
      let moved = 0;
      for (const [k, t] of x) {
        diff = Math.max(diff, t.sub(y.get(k)!).abs().max().item());
        moved = Math.max(moved, t.sub(init.get(k)!).abs().max().item());
      }
      return { diff, moved };
    });
  }

  // AdamW's first updates are lr x sign(g) for tiny g, which turns float-rounding differences of
  // near-zero gradients into lr-sized ones; an epsilon of 1e-2 keeps updates proportional to g, so
  // the comparison sees the gradients' agreement
  const equal = ['--sample_seeds', '--adam_epsilon', '1e-2'];
  const cases = [
    { name: '2 processes x batch 2 equal 1 process x batch 4', nproc: 2, batch: 2, extra: [] },
    { name: '2 processes x batch 2 x 2 accumulation steps equal 1 process x batch 4 x 2', nproc: 2, batch: 2, extra: ['--gradient_accumulation_steps', '2'] },
    { name: '3 processes x batch 1 equal 1 process x batch 3', nproc: 3, batch: 1, extra: [] },
    // the gradient average starts from hooks while checkpointed segments are replayed
    { name: '2 processes x batch 2 with gradient checkpointing equal 1 process x batch 4', nproc: 2, batch: 2, extra: ['--gradient_checkpointing'] },
  ];
  for (const c of cases) {
    test(`${c.name} (--sample_seeds): weights within 1e-6, losses within 1e-3`, async () => {
      const one = join(dir, `one-${c.nproc}-${c.extra.join('')}`);
      const many = join(dir, `many-${c.nproc}-${c.extra.join('')}`);
      const a = await runTrain(flags(one, c.batch * c.nproc, [...equal, ...c.extra]));
      assert.equal(a.code, 0, a.err);
      const b = await launch(c.nproc, flags(many, c.batch, [...equal, ...c.extra]));
      assert.equal(b.code, 0, b.err);
      assert.match(b.err, new RegExp(`processes: ${c.nproc} \\(torchrun variables; rank 0`));
      const { diff, moved } = weightDifference(one, many);
      assert.ok(moved > 1e-4, `training moved the weights (${moved})`);
      assert.ok(diff <= 1e-6, `largest weight difference ${diff}`);
      const [la, lb] = [metricsRows(one), metricsRows(many)];
      assert.equal(lb.length, 3);
      // the loss multiplies MSE differences by beta_dpo / 2 (2500): float-level weight differences show at 1e-5 to 1e-4
      lb.forEach((r, i) => assert.ok(Math.abs(r.train_loss! - la[i]!.train_loss!) <= 1e-3 * Math.abs(la[i]!.train_loss!), `step ${i + 1}: ${r.train_loss} vs ${la[i]!.train_loss}`));
      assert.equal(lb[0]!.train_loss, la[0]!.train_loss, 'the first update starts from the same weights: the same loss');
      assert.ok(lb.every((r) => r.comm_share! >= 0 && r.comm_share! < 1));
      // rank 0 alone writes: one metrics file, no other rank's files
      assert.deepEqual(readdirSync(many).filter((f) => /rank/.test(f)), []);
    });
  }

  test('LoRA: 2 processes x batch 2 equal 1 process x batch 4 (--sample_seeds): adapters within 1e-6, rank 0\'s initial adapters everywhere', async () => {
    const lora = ['--lora_rank', '4', '--lora_alpha', '8'];
    const one = join(dir, 'lora-one');
    const many = join(dir, 'lora-many');
    const a = await runTrain(flags(one, 4, [...equal, ...lora]));
    assert.equal(a.code, 0, a.err);
    const b = await launch(2, flags(many, 2, [...equal, ...lora]));
    assert.equal(b.code, 0, b.err);
    torch.tidy(() => {
      const [x, y] = [one, many].map((d) => torch.loadSafetensors(join(d, 'pytorch_lora_weights.safetensors')));
      let diff = 0;
      let moved = 0;
      for (const [k, t] of x!) {
        diff = Math.max(diff, t.sub(y!.get(k)!).abs().max().item());
        if (k.endsWith('.up.weight')) moved = Math.max(moved, t.abs().max().item());
      }
      assert.ok(moved > 1e-4, `the up weights left zero (${moved})`);
      assert.ok(diff <= 1e-6, `largest adapter difference ${diff}`);
    });
    assert.equal(metricsRows(many)[0]!.train_loss, metricsRows(one)[0]!.train_loss);
  });

  test('SIGKILL of every process, then a resume: bit-identical to an uninterrupted 2-process run', async () => {
    const args = (out: string) => flags(out, 2, ['--max_train_steps', '12', '--checkpointing_steps', '2']);
    const whole = join(dir, 'whole');
    const r = await launch(2, args(whole));
    assert.equal(r.code, 0, r.err);
    const cut = join(dir, 'cut');
    const p = spawn(process.execPath, [bin, 'launch', '--nproc_per_node', '2', 'train', ...args(cut)], { detached: true, stdio: 'ignore', env: { ...process.env, DPO_NUM_THREADS: '1' } });
    const exited = new Promise((resolve) => p.on('exit', resolve));
    while (!existsSync(join(cut, 'checkpoint-2'))) await new Promise((res) => setTimeout(res, 50));
    process.kill(-p.pid!, 'SIGKILL'); // the launcher and both ranks at once
    await exited;
    await new Promise((res) => setTimeout(res, 300));
    assert.ok(!existsSync(join(cut, 'model_index.json')), 'killed before the end');
    const resumed = await launch(2, args(cut));
    assert.equal(resumed.code, 0, resumed.err);
    assert.match(resumed.err, /resumed from .*checkpoint-\d+ at step \d+/);
    assertSameUNet(whole, cut, 'killed and resumed vs uninterrupted');
    const tail = (rows: Record<string, number>[]) => rows.slice(-3).map((x) => [x.step, x.train_loss]);
    assert.deepEqual(tail(metricsRows(cut)), tail(metricsRows(whole)));
    const state = JSON.parse(readFileSync(join(cut, 'checkpoint-12', 'trainer_state.json'), 'utf8')) as { ranks: unknown[] };
    assert.equal(state.ranks.length, 2, 'each rank\'s data position and generators');
  });

  test('under torchrun itself (python -m torch.distributed.run --no-python): the weights of the launcher\'s run', async (t) => {
    const python = process.env.DPO_PYTHON ?? 'python3';
    const probe = spawnSync(python, ['-c', 'import torch.distributed.run'], { encoding: 'utf8' });
    if (probe.status !== 0) return t.skip(`no torchrun here (${python} cannot import torch.distributed.run)`);
    const viaLaunch = join(dir, 'via-launch');
    const viaTorchrun = join(dir, 'via-torchrun');
    const a = await launch(2, flags(viaLaunch, 2));
    assert.equal(a.code, 0, a.err);
    const port = String(await freePort());
    const b = await spawnRank([python, '-m', 'torch.distributed.run', '--no-python', '--nproc_per_node', '2', '--master_port', port,
      process.execPath, bin, 'train', ...flags(viaTorchrun, 2)], {}, 0).done;
    assert.equal(b.code, 0, b.err);
    assert.match(b.err, /processes: 2 \(torchrun variables; rank 0/);
    assertSameUNet(viaLaunch, viaTorchrun, 'diffusion-dpo launch vs torchrun');
  });

  test('resuming with another number of processes is refused, naming world_size', async () => {
    const r = await runTrain(flags(join(dir, 'cut'), 2, ['--max_train_steps', '14']));
    assert.equal(r.code, 1);
    assert.match(r.err, /cannot resume from .*world_size: 2 -> 1/);
  });

  test('bad rows in one rank\'s share: every rank still runs the same micro-steps, and the run completes', async () => {
    const bad = join(dir, 'bad-data');
    const table = await writeWarmPreferenceSet(bad, 16, 16, 5);
    // three unreadable images: the ranks' shares lose different numbers of rows, so their epochs end at different batches
    for (const f of readdirSync(join(bad, 'images')).sort().slice(0, 3)) writeFileSync(join(bad, 'images', f), 'not an image');
    const out = join(dir, 'bad-run');
    const args = flags(out, 2, ['--max_train_steps', '8', '--max_bad_fraction', '0.5']).map((a) => (a === data ? table : a));
    const r = await launch(2, args);
    assert.equal(r.code, 0, r.err);
    // the plan counts 4 updates per epoch; the bad rows leave fewer, so the two epochs end earlier
    const rows = metricsRows(out);
    assert.equal(rows.length, (JSON.parse(r.out) as { steps: number }).steps);
    assert.ok(existsSync(join(out, 'model_index.json')), 'the run completed');
    assert.ok(rows[rows.length - 1]!.bad_rows! > 0, 'rank 0 counted bad rows');
    const listed = readdirSync(out).filter((f) => f.startsWith('bad_rows')).flatMap((f) => readFileSync(join(out, f), 'utf8').trim().split('\n'));
    assert.ok(listed.length >= 3, `every process lists its bad rows: ${listed.length}`);
  });

  /** Waits until `out` has a first checkpoint (training is under way). */
  async function untilTraining(out: string): Promise<void> {
    const t0 = Date.now();
    while (!existsSync(join(out, 'checkpoint-2'))) {
      assert.ok(Date.now() - t0 < 60_000, 'training did not start');
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  function childOf(parent: number, rank: number): number {
    for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      try {
        const ppid = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
        if (ppid === parent && readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`RANK=${rank}`)) return Number(pid);
      } catch {
        // the process ended meanwhile
      }
    }
    throw new Error(`no child of ${parent} with RANK=${rank}`);
  }

  test('launch: a rank killed mid-run stops the job with that rank\'s failure and exit code', async () => {
    const out = join(dir, 'killed-rank');
    const l = spawnRank([bin, 'launch', '--nproc_per_node', '2', 'train', ...flags(out, 2, ['--max_train_steps', '400'])], {}, 0);
    await untilTraining(out);
    const t0 = Date.now();
    process.kill(childOf(l.pid, 1), 'SIGKILL');
    const e = await l.done;
    assert.equal(e.code, 137);
    assert.match(e.err, /\[launch\] rank 1 was killed by SIGKILL; the other processes were stopped/);
    assert.ok(Date.now() - t0 < 30_000);
    assert.ok(!existsSync(join(out, 'model_index.json')));
  });

  test('without the launcher (torchrun\'s variables), a dead peer ends the others within the timeout', async () => {
    const out = join(dir, 'dead-peer');
    const port = String(await freePort());
    const ranks = [0, 1].map((rank) => spawnRank([bin, 'train', ...flags(out, 2, ['--max_train_steps', '400', '--ddp_timeout', '20'])], {
      RANK: String(rank), WORLD_SIZE: '2', LOCAL_RANK: String(rank), MASTER_ADDR: '127.0.0.1', MASTER_PORT: port,
    }, rank));
    await untilTraining(out);
    const t0 = Date.now();
    process.kill(ranks[1]!.pid, 'SIGKILL');
    const zero = await ranks[0]!.done;
    assert.notEqual(zero.code, 0);
    assert.match(zero.err, /rank 0 of 2: gloo .*(another process of the job has ended|no answer within 20 s)/);
    assert.ok(Date.now() - t0 < 40_000, `rank 0 ended after ${(Date.now() - t0) / 1000} s`);
  });

  test('launch passes SIGTERM on: every rank saves at the same update and stops; exit 143', async () => {
    const out = join(dir, 'sigterm');
    const l = spawnRank([bin, 'launch', '--nproc_per_node', '2', 'train', ...flags(out, 2, ['--max_train_steps', '400', '--checkpointing_steps', '100'])], {}, 0);
    while (!existsSync(join(out, 'logs', 'tuning', 'metrics.jsonl'))) await new Promise((res) => setTimeout(res, 50));
    process.kill(l.pid, 'SIGTERM');
    const e = await l.done;
    assert.equal(e.code, 143, e.err);
    const saved = readdirSync(out).filter((d) => d.startsWith('checkpoint-'));
    assert.equal(saved.length, 1, `one checkpoint at the stop: ${saved}`);
    const steps = metricsRows(out).length;
    assert.equal(saved[0], `checkpoint-${steps}`);
  });
});

describe('process layout', () => {
  test('torchrun\'s variables, SLURM\'s, and what is refused', () => {
    assert.deepEqual(processLayout({}), { rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, masterAddr: '127.0.0.1', masterPort: 29500, source: 'single', attempt: 0 });
    assert.deepEqual(processLayout({ RANK: '3', WORLD_SIZE: '4', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: 'node0', MASTER_PORT: '1234', TORCHELASTIC_RESTART_COUNT: '2' }),
      { rank: 3, worldSize: 4, localRank: 1, localWorldSize: 2, masterAddr: 'node0', masterPort: 1234, source: 'torchrun', attempt: 2 });
    assert.equal(processLayout({ RANK: '3', WORLD_SIZE: '4', MASTER_ADDR: 'pod0' }).localRank, 0, 'no LOCAL_RANK (a PyTorchJob pod): its first GPU');
    const srun = { SLURM_STEP_ID: '0' };
    assert.deepEqual(processLayout({ ...srun, SLURM_PROCID: '5', SLURM_NTASKS: '8', SLURM_LOCALID: '1', SLURM_NNODES: '2', MASTER_ADDR: 'gpu01' }),
      { rank: 5, worldSize: 8, localRank: 1, localWorldSize: 4, masterAddr: 'gpu01', masterPort: 29500, source: 'slurm', attempt: 0 });
    assert.equal(processLayout({ ...srun, SLURM_PROCID: '1', SLURM_NTASKS: '2' }).masterAddr, '127.0.0.1', 'one node: loopback');
    assert.equal(processLayout({ ...srun, SLURM_PROCID: '0', SLURM_NTASKS: '1' }).source, 'single');
    assert.equal(processLayout({ SLURM_PROCID: '0', SLURM_NTASKS: '8' }).source, 'single', 'an 8-task job\'s batch script, outside srun: one process');
    assert.throws(() => processLayout({ ...srun, SLURM_PROCID: '1', SLURM_NTASKS: '8', SLURM_NNODES: '2' }), /needs MASTER_ADDR.*scontrol show hostnames/);
    assert.throws(() => processLayout({ RANK: '1', WORLD_SIZE: '2' }), /needs MASTER_ADDR/);
    assert.throws(() => processLayout({ RANK: '2', WORLD_SIZE: '2', MASTER_ADDR: 'x' }), /RANK 2 is outside WORLD_SIZE 2/);
    assert.throws(() => processLayout({ WORLD_SIZE: 'two' }), /WORLD_SIZE must be an integer/);
  });
});
