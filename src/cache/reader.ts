// Training from a latent cache: the loader's samples come from the cache's shards instead of the
// images. The sample's random choices are drawn exactly as for images (samples.ts), and pick the
// cached view of each image (flipped or not) and the caption (one of a list, or the empty prompt's
// conditioning when the caption is dropped). Only the chosen slices are read, with positioned
// reads off the JS thread; a shard's header is parsed once, when first needed.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import * as torch from '../torch/index.js';
import { parseSafetensorsHeader, type TensorInfo } from '../torch/index.js';
import type { BadRow } from '../data/record.js';
import { drawSampleChoices, type SampleOutcome, type SampleSource } from '../data/samples.js';
import { CacheError, EMPTY_PROMPT, readManifest, settingsDifferences, type CacheManifest, type CacheSettings } from './manifest.js';

export interface CachedSampleOptions {
  seed: number;
  hflip: boolean;
  proportionEmptyPrompts: number;
  method: 'dpo' | 'sft';
}

/** Reads the header of a shard: its tensors by name. */
function readShardHeader(path: string): Map<string, TensorInfo> {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const { tensors } = parseSafetensorsHeader(path, size, (pos, len) => {
      const buf = Buffer.alloc(len);
      readSync(fd, buf, 0, len, pos);
      return buf;
    });
    return new Map(tensors.map((t) => [t.name, t]));
  } finally {
    closeSync(fd);
  }
}

/** Bytes [begin, begin + len) of `path`, read off the JS thread. */
async function readRange(path: string, ranges: { begin: number; length: number }[]): Promise<Buffer[]> {
  const f = await open(path, 'r');
  try {
    return await Promise.all(ranges.map(async ({ begin, length }) => {
      const buf = Buffer.allocUnsafe(length);
      const { bytesRead } = await f.read(buf, 0, length, begin);
      if (bytesRead !== length) throw new CacheError(path, `truncated: ${bytesRead} of ${length} bytes at ${begin}`);
      return buf;
    }));
  } finally {
    await f.close();
  }
}

export class LatentCache {
  readonly #rowShard = new Map<number, { shard: number; label0: number }>();
  readonly #bad = new Map<number, BadRow>();
  readonly #headers = new Map<number, Map<string, TensorInfo>>();
  readonly #empty: { text: torch.HostTensor; pooled: torch.HostTensor | null };

  private constructor(readonly dir: string, readonly manifest: CacheManifest) {
    const m = manifest;
    m.rows.forEach((row, i) => this.#rowShard.set(row, { shard: Math.floor(i / m.rows_per_shard), label0: m.labels[i]! }));
    for (const b of m.bad) this.#bad.set(b.row, b);
    const empty = torch.tidy(() => torch.snapshotTensors(torch.loadSafetensors(join(dir, EMPTY_PROMPT))));
    this.#empty = { text: empty.get('text')!, pooled: empty.get('pooled') ?? null };
  }

  /** Opens a complete cache (an interrupted build is refused: resume it with `diffusion-dpo cache`). */
  static open(dir: string): LatentCache {
    const m = readManifest(dir);
    if (!m.complete) throw new CacheError(dir, `the cache is incomplete (${m.shards.filter(Boolean).length} of ${Math.ceil(m.rows.length / m.rows_per_shard)} shards): run the same diffusion-dpo cache command again to finish it`);
    return new LatentCache(dir, m);
  }

  /**
   * Why this cache cannot serve a run with these settings and rows, as a list of differences: the
   * encoders, resolution, dtype, crop policy and dataset must be the run's; a run with flips needs
   * cached flips; every row the run can read must be in the cache (cached or known unusable).
   */
  mismatches(run: CacheSettings, runRows: readonly number[]): string[] {
    const s = this.manifest.settings;
    // a run may take a subset of the cached rows (the row check below), and either view set serves --no_hflip
    const ignore = new Set(['hflip', 'dataset max_train_samples', 'dataset seed', 'dataset dreamlike_pairs_only', 'dataset excluded']);
    const out = settingsDifferences(s, run, ignore);
    if (run.hflip === 'both' && s.hflip === 'none') out.push('hflip: the cache holds unflipped views only, the run flips at random (pass --no_hflip, or cache with flips)');
    const missing = runRows.filter((r) => !this.#rowShard.has(r) && !this.#bad.has(r));
    if (missing.length) out.push(`${missing.length} of the run's ${runRows.length} rows are not in the cache (e.g. row ${missing[0]}; it was made with dreamlike_pairs_only ${s.dataset.dreamlike_pairs_only}, max_train_samples ${s.dataset.max_train_samples})`);
    return out;
  }

  /** A sample source for the loader, with the run's augmentation and dropout settings. */
  samples(o: CachedSampleOptions): SampleSource {
    return { prepare: (row, epoch) => this.#prepare(row, epoch, o) };
  }

  #header(shard: number): Map<string, TensorInfo> {
    let h = this.#headers.get(shard);
    if (!h) {
      h = readShardHeader(join(this.dir, this.manifest.shards[shard]!));
      this.#headers.set(shard, h);
    }
    return h;
  }

  async #prepare(row: number, epoch: number, o: CachedSampleOptions): Promise<SampleOutcome> {
    const bad = this.#bad.get(row);
    if (bad) return { bad: bad.reason, ...(bad.detail ? { detail: bad.detail } : {}) };
    const at = this.#rowShard.get(row);
    if (!at) throw new CacheError(this.dir, `row ${row} is not in the cache`);
    const s = this.manifest.settings;
    const header = this.#header(at.shard);
    const moments = header.get(`${row}.moments`);
    const text = header.get(`${row}.text`);
    const pooled = header.get(`${row}.pooled`) ?? null;
    if (!moments || !text) throw new CacheError(join(this.dir, this.manifest.shards[at.shard]!), `row ${row} is missing`);
    // the images in the order the image loader puts them: preferred first (SFT: the preferred only)
    const preferredFirst = at.label0 !== 0;
    const order = s.images_per_row === 1 ? [0] : o.method === 'sft' ? [preferredFirst ? 0 : 1] : preferredFirst ? [0, 1] : [1, 0];
    const c = drawSampleChoices(o.seed, epoch, row, order.length, o.proportionEmptyPrompts);
    const [, views, ...latent] = moments.shape as [number, number, number, number, number];
    const imageBytes = (moments.end - moments.begin) / moments.shape[0]!;
    const viewBytes = imageBytes / views;
    const captions = text.shape[0]!;
    const k = Math.floor(c.listPick * captions);
    const ranges = order.map((img, j) => ({ begin: moments.begin + img * imageBytes + (o.hflip && c.images[j]!.flip ? viewBytes : 0), length: viewBytes }));
    if (!c.dropCaption) {
      const textBytes = (text.end - text.begin) / captions;
      ranges.push({ begin: text.begin + k * textBytes, length: textBytes });
      if (pooled) {
        const pooledBytes = (pooled.end - pooled.begin) / captions;
        ranges.push({ begin: pooled.begin + k * pooledBytes, length: pooledBytes });
      }
    }
    const bytes = await readRange(join(this.dir, this.manifest.shards[at.shard]!), ranges);
    const host = (data: Buffer, info: TensorInfo, shape: number[]): torch.HostTensor => ({ dtype: info.dtype, shape, data });
    return {
      row, caption: '',
      encoded: {
        moments: order.map((_, j) => host(bytes[j]!, moments, latent)),
        text: c.dropCaption ? this.#empty.text : host(bytes[order.length]!, text, text.shape.slice(1)),
        pooled: c.dropCaption ? this.#empty.pooled : pooled ? host(bytes[order.length + 1]!, pooled, pooled.shape.slice(1)) : null,
      },
    };
  }
}
