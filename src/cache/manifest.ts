// A latent cache folder: manifest.json (what was encoded, with what, and where), shards of
// per-row encodings (shard-NNNNN.safetensors) and empty_prompt.safetensors (the "" caption's
// conditioning, for caption dropout). In a shard, row R has:
//   R.moments  [images, views, 2C, h, w]  the VAE posterior's parameters (mean, log-variance) of each
//                                         image in the dataset's order (image 0, image 1), for each
//                                         view: unflipped, then flipped when flips are cached
//   R.text     [captions, 77, D]          each caption's conditioning (SD: the last hidden state;
//                                         SDXL: both encoders' penultimate states side by side)
//   R.pooled   [captions, D2]             SDXL: the pooled text embeds
// in the weight dtype the cache was made for. The manifest is rewritten (atomically) after every
// shard, so a killed build resumes at the first shard it lacks.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DType } from '../torch/index.js';
import type { BadRow } from '../data/record.js';
import { writeFileAtomic } from '../models/index.js';
import { UserError } from '../util/errors.js';

export const MANIFEST = 'manifest.json';

export type MomentsFormat = 'contiguous' | 'channelsLast';
export const EMPTY_PROMPT = 'empty_prompt.safetensors';

/** What the encodings are of, and how they were made: a run must agree on all of it. */
export interface CacheSettings {
  kind: 'sd' | 'sdxl';
  /** sha256 of the encoders' configs, weights and tokenizer files (identity.ts). */
  encoders_sha256: string;
  resolution: number;
  /** Images per row: 2 (pairs) or 1 (single-image SFT data). */
  images_per_row: 1 | 2;
  /** 'both': unflipped and flipped views of every image; 'none': unflipped only (runs with --no_hflip). */
  hflip: 'both' | 'none';
  /** Always center: random crops draw continuous offsets per step, which a cache cannot hold. */
  crop: 'center';
  weight_dtype: DType;
  /** What the rows are: a run's rows must all be here. */
  dataset: { source: string; split: string; rows_read: number; dreamlike_pairs_only: boolean; max_train_samples: number | null; seed: number | null; excluded: number };
}

export interface CacheManifest {
  format: 'diffusion-dpo latent cache';
  version: 1;
  settings: CacheSettings;
  /**
   * The VAE's scaling_factor and latent channels (the trainer needs them without the VAE), and the
   * memory format its encoder's output has, for one image and for several: the mid-block attention
   * reshapes back to NCHW as a channels-last view, which the convolutions keep for batches of two or
   * more (libtorch 2.13 on CPU; a single image comes out contiguous). The noise of a step is drawn
   * with randn_like(latents), in the latents' memory order, so a cached run gives its latents the
   * format the VAE would have given them, to draw the same noise.
   */
  vae: { scaling_factor: number; latent_channels: number; moments_memory_format: { single: MomentsFormat; batched: MomentsFormat } };
  model: string;
  rows_per_shard: number;
  /** Kept rows in shard order (the dataset's kept rows, in index order); shard i holds rows[i * rows_per_shard, ...). */
  rows: number[];
  /** label_0 of each row of `rows` (which image is preferred). */
  labels: number[];
  /** Shards written so far, by index; a row of an unwritten shard is not cached yet. */
  shards: string[];
  /** Rows found unusable while encoding (no caption, a missing or undecodable image). */
  bad: BadRow[];
  complete: boolean;
}

export class CacheError extends UserError {
  constructor(readonly path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = 'CacheError';
  }
}

export function readManifest(dir: string): CacheManifest {
  const path = join(dir, MANIFEST);
  if (!existsSync(path)) throw new CacheError(dir, `not a latent cache (no ${MANIFEST}; diffusion-dpo cache makes one)`);
  let m: CacheManifest;
  try {
    m = JSON.parse(readFileSync(path, 'utf8')) as CacheManifest;
  } catch (e) {
    throw new CacheError(path, `unreadable manifest (${(e as Error).message})`);
  }
  if (m.format !== 'diffusion-dpo latent cache' || m.version !== 1) throw new CacheError(path, `not a version-1 diffusion-dpo latent cache manifest`);
  return m;
}

export function writeManifest(dir: string, m: CacheManifest): void {
  writeFileAtomic(join(dir, MANIFEST), JSON.stringify(m) + '\n');
}

/** The settings that differ, as "name: cache -> run" (nested dataset fields flattened). */
export function settingsDifferences(cache: CacheSettings, run: CacheSettings, ignore: ReadonlySet<string> = new Set()): string[] {
  const flat = (s: CacheSettings): Record<string, unknown> => {
    const { dataset, ...rest } = s;
    return { ...rest, ...Object.fromEntries(Object.entries(dataset).map(([k, v]) => [`dataset ${k}`, v])) };
  };
  const a = flat(cache);
  const b = flat(run);
  return Object.keys(b).filter((k) => !ignore.has(k) && JSON.stringify(a[k]) !== JSON.stringify(b[k])).map((k) => `${k}: ${JSON.stringify(a[k])} -> ${JSON.stringify(b[k])}`);
}

export function shardName(i: number): string {
  return `shard-${String(i).padStart(5, '0')}.safetensors`;
}
