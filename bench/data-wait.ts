// Benchmark: the share of training time spent waiting for the next batch (data_wait_share, logged
// per update), with 0 and N data workers, on the tiny pipeline fed 768x640 photo-like JPEGs from a
// parquet shard, as `train` runs it, at 32 and 64 px (the tiny VAE downsamples by 2 only, so
// larger sizes give latents where the tiny UNet's attention dominates). The tiny UNet makes the
// step cheap, so this is the worst case for the data pipeline: the share says how much of the
// host's data work is not hidden behind the step. Windows after the first two (loader cold start) are averaged; rounds interleave the worker
// counts and the lowest share of each is kept (these machines are shared and noisy).
//
//   npm run build && node dist/bench/data-wait.js          (DPO_BENCH_ROUNDS=2, DPO_BENCH_UPDATES=12)
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeTinyPipeline } from '../test/helpers/tiny_pipeline.js';
import { writeShard, type FakeRow } from '../test/helpers/pickapic.js';
import { photo } from './photos.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const rounds = Number(process.env.DPO_BENCH_ROUNDS ?? 2);
const updates = Number(process.env.DPO_BENCH_UPDATES ?? 12);
const cores = availableParallelism();
const work = mkdtempSync(join(tmpdir(), 'dpo-bench-wait-'));

interface Result {
  dataWaitShare: number;
  pairsPerSecond: number;
}

function runOnce(model: string, data: string, resolution: number, workers: number, batch: number): Result {
  const out = join(work, `run-${resolution}-${workers}`);
  rmSync(out, { recursive: true, force: true });
  const r = spawnSync(process.execPath, [join(root, 'bin', 'diffusion-dpo.js'), 'train',
    '--pretrained_model_name_or_path', model, '--dataset_name', data, '--output_dir', out, '--resolution', String(resolution),
    '--train_batch_size', String(batch), '--max_train_steps', String(updates), '--checkpointing_steps', '100000', '--mixed_precision', 'no',
    '--learning_rate', '1e-5', '--lr_warmup_steps', '0', '--seed', '1', '--dataloader_num_workers', String(workers)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`train failed (${resolution} px, ${workers} workers):\n${r.stderr}`);
  const rows = readFileSync(join(out, 'logs', 'tuning', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  const steady = rows.slice(2);
  const mean = (k: string) => steady.reduce((s, row) => s + row[k]!, 0) / steady.length;
  return { dataWaitShare: mean('data_wait_share'), pairsPerSecond: mean('pairs_per_s') };
}

async function main(): Promise<void> {
  const model = join(work, 'model');
  writeTinyPipeline(model, 0);
  const data = join(work, 'data');
  mkdirSync(data);
  const images = await Promise.all(Array.from({ length: 16 }, (_, i) => photo(i)));
  const rows: FakeRow[] = Array.from({ length: 64 }, (_, i) => ({
    caption: `a photo ${i}`, jpg0: images[i % 16]!, jpg1: images[(i + 5) % 16]!, label0: i % 2, label1: 1 - (i % 2), model0: 'm', model1: 'm',
  }));
  writeShard(join(data, 'train-00000-of-00001.parquet'), rows, { rowGroupSize: 16 });

  const batch = 2;
  const configs = [32, 64].flatMap((resolution) => [0, 1, cores].filter((w, i, a) => a.indexOf(w) === i).map((workers) => ({ resolution, workers })));
  const best = new Map<string, Result>();
  for (let round = 0; round < rounds; round++) {
    for (const c of configs) {
      const key = `${c.resolution}/${c.workers}`;
      const r = runOnce(model, data, c.resolution, c.workers, batch);
      const prev = best.get(key);
      if (!prev || r.dataWaitShare < prev.dataWaitShare) best.set(key, r);
    }
  }
  console.log(`data-wait benchmark: ${cpus()[0]?.model ?? 'CPU'}, ${cores} cores; tiny pipeline, batch ${batch} pairs, ${updates} updates, 768x640 JPEGs, best of ${rounds}\n`);
  console.log('resolution  workers  waiting for data  pairs/s');
  for (const c of configs) {
    const r = best.get(`${c.resolution}/${c.workers}`)!;
    console.log(`${String(c.resolution).padStart(10)}${String(c.workers).padStart(9)}${`${(100 * r.dataWaitShare).toFixed(1)}%`.padStart(18)}${r.pairsPerSecond.toFixed(1).padStart(9)}`);
  }
}

main().finally(() => rmSync(work, { recursive: true, force: true }));
