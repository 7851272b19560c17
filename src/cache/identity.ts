// What a latent cache's encodings depend on, as a hash: the VAE's and text encoders' configs and
// weight files (those the loader reads), and the tokenizers' files. A cache made with other
// encoders is refused by a run, however the folders are named.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { findWeightFiles } from '../models/index.js';
import type { DType } from '../torch/index.js';
import type { CacheSettings } from './manifest.js';

/** The files the encoders are made of: each component's config.json and weights, each tokenizer's files. */
export function encoderFiles(modelPath: string, o: { vaeFolder?: string } = {}): string[] {
  const files: string[] = [];
  const component = (folder: string) => {
    if (!existsSync(folder)) return;
    files.push(join(folder, 'config.json'), ...findWeightFiles(folder));
  };
  component(o.vaeFolder ?? join(modelPath, 'vae'));
  component(join(modelPath, 'text_encoder'));
  component(join(modelPath, 'text_encoder_2'));
  for (const tok of ['tokenizer', 'tokenizer_2']) {
    const folder = join(modelPath, tok);
    if (!existsSync(folder)) continue;
    for (const f of readdirSync(folder).sort()) if (statSync(join(folder, f)).isFile()) files.push(join(folder, f));
  }
  return files;
}

/** sha256 over each file's path (relative to the model, or its name for a separate VAE), size and bytes. */
export async function encoderHash(modelPath: string, o: { vaeFolder?: string } = {}): Promise<string> {
  const h = createHash('sha256');
  for (const file of encoderFiles(modelPath, o)) {
    const name = file.startsWith(modelPath) ? relative(modelPath, file) : `vae/${relative(o.vaeFolder!, file)}`;
    h.update(`${name}\0${statSync(file).size}\0`);
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 22 })) h.update(chunk as Buffer);
  }
  return h.digest('hex');
}

export interface CacheSettingsInput {
  modelPath: string;
  vaeFolder?: string;
  kind: 'sd' | 'sdxl';
  resolution: number;
  hflip: boolean;
  weightDtype: DType;
  /** Whether the rows hold pairs (2 images) or single images. */
  pairs: boolean;
  dataset: CacheSettings['dataset'];
}

/** The settings a cache made for (or used by) a run with these inputs has. */
export async function cacheSettings(i: CacheSettingsInput): Promise<CacheSettings> {
  return {
    kind: i.kind, encoders_sha256: await encoderHash(i.modelPath, { vaeFolder: i.vaeFolder }), resolution: i.resolution,
    images_per_row: i.pairs ? 2 : 1, hflip: i.hflip ? 'both' : 'none', crop: 'center', weight_dtype: i.weightDtype, dataset: i.dataset,
  };
}

/** The dataset part of the settings: which source and split, how many rows it had, and the filters that chose the rows. */
export function datasetIdentity(sourcePath: string, split: string, stats: { rowsRead: number; excluded: number }, filters: { dreamlikePairsOnly: boolean; maxTrainSamples: number | null; seed: number | null }): CacheSettings['dataset'] {
  return {
    source: sourcePath, split, rows_read: stats.rowsRead, dreamlike_pairs_only: filters.dreamlikePairsOnly,
    max_train_samples: filters.maxTrainSamples, seed: filters.maxTrainSamples === null ? null : filters.seed, excluded: stats.excluded,
  };
}
