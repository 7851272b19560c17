// Benchmark: decoded + transformed pairs/s at 512 px (one thread, and all cores), ours against PIL
// + the torchvision transform arithmetic in Python on the same JPEGs, plus peak RSS while streaming
// parquet shards of two sizes through the loader (memory should not grow with the shard).
//   node dist/bench/data.js            (DPO_BENCH_PAIRS=120 by default)
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PreferenceDataset } from '../src/data/dataset.js';
import { PairLoader } from '../src/data/loader.js';
import { TransformPool } from '../src/data/transform_pool.js';
import { writeShard, type FakeRow } from '../test/helpers/pickapic.js';
import { photo } from './photos.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const pairs = Number(process.env.DPO_BENCH_PAIRS ?? 120);
const RES = 512;
const cores = availableParallelism();
const work = mkdtempSync(join(tmpdir(), 'dpo-bench-data-'));

async function main(): Promise<void> {
  const jpgDir = join(work, 'jpg');
  mkdirSync(jpgDir);
  const images: Buffer[] = [];
  for (let i = 0; i < 16; i++) {
    images.push(await photo(i));
    writeFileSync(join(jpgDir, `${String(i).padStart(3, '0')}.jpg`), images[i]!);
  }
  // 1. transform throughput on the same JPEGs: ours (a pool of N workers, or the main thread) vs Python
  const rate = async (workers: number) => {
    const pool = new TransformPool(workers);
    const job = (i: number) => ({ bytes: images[i % images.length]!, resolution: RES, crop: null, hflip: i % 2 === 0 });
    await Promise.all([0, 1, 2, 3].map((i) => pool.run(job(i))));
    const t0 = performance.now();
    const inflight = Math.max(2, workers * 2);
    let next = 0;
    await Promise.all(Array.from({ length: inflight }, async () => {
      while (next < pairs * 2) await pool.run(job(next++));
    }));
    await pool.close();
    return pairs / ((performance.now() - t0) / 1000);
  };
  const ours1 = await rate(1);
  const oursAll = await rate(cores);
  const oursMain = await rate(0);
  const py = spawnSync(process.env.DPO_PYTHON ?? 'python3', [join(root, 'bench', 'data_reference.py'), jpgDir, String(RES), String(cores)], { encoding: 'utf8' });
  if (py.status !== 0) throw new Error(`Python reference failed: ${py.stderr}`);
  const ref = JSON.parse(py.stdout.trim().split('\n').pop()!) as { pairs_per_s_1: number; pairs_per_s_all: number };

  // 2. streaming memory: the loader over a small and a 4x larger shard
  const rss = async (rows: number) => {
    const dir = join(work, `shard-${rows}`);
    mkdirSync(dir);
    const fake: FakeRow[] = Array.from({ length: rows }, (_, i) => ({
      caption: `row ${i}`, jpg0: images[i % 16]!, jpg1: images[(i + 5) % 16]!, label0: 1, label1: 0, model0: 'm', model1: 'm',
    }));
    writeShard(join(dir, 'train-00000-of-00001.parquet'), fake, { rowGroupSize: 50 });
    const size = readFileSync(join(dir, 'train-00000-of-00001.parquet')).length;
    global.gc?.();
    const base = process.memoryUsage().rss;
    let peak = base;
    const ds = await PreferenceDataset.open(dir);
    const loader = new PairLoader(ds, { batchSize: 4, resolution: 256, numWorkers: cores });
    for (let b = await loader.next(); b; b = await loader.next()) peak = Math.max(peak, process.memoryUsage().rss);
    await loader.close();
    return { rows, shardMB: size / 1e6, peakGrowthMB: (peak - base) / 1e6 };
  };
  await rss(40); // warm-up: worker threads and libvips start, allocator pools fill
  const small = await rss(100);
  const large = await rss(400);

  console.log(`data benchmark: ${cpus()[0]?.model ?? 'CPU'}, ${cores} cores; 768x640 JPEGs -> ${RES}px pairs, ${pairs} pairs\n`);
  console.log('transform (decode, resize, crop, flip; Python also ToTensor+Normalize, which ours runs on the device)\n                                                    pairs/s  python pairs/s  ratio');
  const row = (label: string, o: number, p: number) => console.log(`${label.padEnd(51)}${o.toFixed(1).padStart(8)}${p.toFixed(1).padStart(16)}${(o / p).toFixed(2).padStart(7)}`);
  row('one worker thread (Python: one process)', ours1, ref.pairs_per_s_1);
  row(`all cores: ${cores} worker threads (Python: ${cores} processes)`, oursAll, ref.pairs_per_s_all);
  row('main thread, no workers', oursMain, ref.pairs_per_s_1);
  console.log(`\nstreaming memory (loader, batch 4, 256 px, ${cores} workers):`);
  for (const r of [small, large]) console.log(`  ${r.rows} rows, shard ${r.shardMB.toFixed(0)} MB: peak RSS growth ${r.peakGrowthMB.toFixed(0)} MB`);
}

main().finally(() => rmSync(work, { recursive: true, force: true }));
