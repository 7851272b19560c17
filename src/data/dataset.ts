// A preference dataset: a source (parquet shards, a JSONL/CSV table, a w/ + l/ folder) and the
// rows that survive the reference's filters, found from the small columns only:
//   DPO: ties (label_0 == 0.5) removed and counted, as train.py prints "Eliminated N/M split decisions";
//   SFT: the preferred image of rows with label_0 in {0, 1};
//   --dreamlike_pairs_only: model_0 and model_1 both contain "dream";
//   --max_train_samples N: a seeded shuffle of the kept rows, then the first N.
// Rows whose labels are not in {0, 0.5, 1} are skipped and counted.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import type { BadReason, BadRow, PairSource } from './record.js';
import { hash32, shuffled } from './rng.js';
import { openImageFolder, openPairFolder, openTable } from './sources/files.js';
import { TarPairSource } from './sources/tar.js';
import { ParquetPairSource, PICKAPIC_COLUMNS, type PreferenceColumns } from './sources/parquet.js';
import { UserError } from '../util/errors.js';
import { RelabelledSource, type ChoiceLabels } from './choice_labels.js';

export type DataMethod = 'dpo' | 'sft' | 'kto';

export interface DatasetOptions {
  split?: string;
  dreamlikePairsOnly?: boolean;
  maxTrainSamples?: number;
  seed?: number;
  /**
   * SFT keeps the preferred image only (and the desirable ones of labelled single images); DPO
   * (default) keeps pairs; KTO takes pairs (each gives a desirable and an undesirable image) or
   * single images with a per-image label.
   */
  method?: DataMethod;
  /** Pair columns, plus `image`: the image column of single-image (SFT) data (default 'image'). */
  columns?: Partial<PreferenceColumns> & { image?: string };
  /** Raw row ids to leave out (`data --verify --write_exclude` writes them). */
  excludeRows?: ReadonlySet<number>;
  /** AI-feedback labels (diffusion-dpo relabel's sidecar) instead of the source's own. */
  choiceLabels?: ChoiceLabels;
}

export interface DatasetStats {
  source: string;
  rowsRead: number;
  tiesRemoved: number;
  kept: number;
  /** Rows dropped by --exclude_rows. */
  excluded: number;
  /** Rows dropped by filters or found unusable, by reason (images and captions are counted as batches read them). */
  bad: Partial<Record<BadReason, number>>;
  /** The rows found unusable from their small columns (bad labels, missing columns), by id. */
  badRows: BadRow[];
}

export class DatasetError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetError';
  }
}

/** The parquet files of a local dataset folder for a split: <split>-*.parquet, in data/ or at the top. */
export function parquetFilesForSplit(folder: string, split: string): string[] {
  return shardFilesForSplit(folder, split, '.parquet');
}

/**
 * Shards of a split: files named <split>-* (the Hub's layout), or in a <split>/ folder; a folder of
 * shards with no split names at all is taken whole.
 */
export function shardFilesForSplit(folder: string, split: string, ext: string): string[] {
  const candidates: string[] = [];
  for (const dir of [folder, join(folder, 'data'), join(folder, split)]) {
    if (!existsSync(dir) || !statSync(dir).isDirectory()) continue;
    for (const f of readdirSync(dir).sort()) if (f.endsWith(ext)) candidates.push(join(dir, f));
  }
  const forSplit = candidates.filter((p) => p.split('/').pop()!.startsWith(`${split}-`) || p.includes(`/${split}/`));
  return forSplit.length ? forSplit : candidates.filter((p) => !/^(train|validation|test|test_unique|validation_unique)[-_]/.test(p.split('/').pop()!));
}

export async function openSource(path: string, o: DatasetOptions = {}): Promise<PairSource> {
  if (!existsSync(path)) throw new DatasetError(`${path}: no such file or folder`);
  const { image, ...pairColumns } = o.columns ?? {};
  const columns = { ...PICKAPIC_COLUMNS, ...pairColumns };
  const table = { caption: columns.caption, image: image ?? 'image' };
  // single images are SFT data: a DPO run never reads a row as one
  const singleImageColumn = o.method === 'sft' || o.method === 'kto' ? table.image : undefined;
  if (statSync(path).isFile()) {
    const ext = extname(path).toLowerCase();
    if (ext === '.parquet') return ParquetPairSource.open([path], columns, singleImageColumn);
    if (ext === '.jsonl' || ext === '.json' || ext === '.csv') return openTable(path, table);
    if (ext === '.tar') return TarPairSource.open([path], { caption: [table.caption, 'txt'] });
    throw new DatasetError(`${path}: unknown data file type '${ext}' (expected .parquet, .tar, .jsonl or .csv)`);
  }
  if (existsSync(join(path, 'w')) && existsSync(join(path, 'l'))) return openPairFolder(path, table.caption);
  const files = parquetFilesForSplit(path, o.split ?? 'train');
  if (files.length) return ParquetPairSource.open(files, columns, singleImageColumn);
  const tars = shardFilesForSplit(path, o.split ?? 'train', '.tar');
  if (tars.length) return TarPairSource.open(tars, { caption: [table.caption, 'txt'] });
  const folder = openImageFolder(path, table);
  if (folder) return folder;
  throw new DatasetError(`${path}: no parquet or tar shards for split '${o.split ?? 'train'}', no w/ + l/ folders, and no metadata.jsonl of an image folder`);
}

/**
 * Row ids from a file: one per line, as a number or a JSON object with a `row` field (the format of
 * bad_rows.jsonl and of `data --verify --write_exclude`). Blank lines and # comments are skipped.
 */
export function readRowIds(file: string): Set<number> {
  const ids = new Set<number>();
  readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
    const t = line.trim();
    if (!t || t.startsWith('#')) return;
    let v: unknown = Number(t);
    if (!Number.isInteger(v)) {
      try {
        v = (JSON.parse(t) as { row?: unknown }).row;
      } catch {
        v = undefined;
      }
    }
    if (!Number.isInteger(v) || (v as number) < 0) throw new DatasetError(`${file}:${i + 1}: not a row id ('${t.slice(0, 60)}'; expected a number or {"row": N})`);
    ids.add(v as number);
  });
  return ids;
}

export class PreferenceDataset {
  private constructor(readonly source: PairSource, readonly indices: number[], readonly stats: DatasetStats, readonly method: DataMethod) {}

  static async open(path: string, o: DatasetOptions = {}): Promise<PreferenceDataset> {
    const source = await openSource(path, o);
    return PreferenceDataset.fromSource(o.choiceLabels ? new RelabelledSource(source, o.choiceLabels) : source, o);
  }

  static async fromSource(source: PairSource, o: DatasetOptions = {}): Promise<PreferenceDataset> {
    const method = o.method ?? 'dpo';
    if (method === 'dpo' && !source.pairs) {
      throw new DatasetError(`${source.description}: single images, not preference pairs; DPO needs pairs (--sft trains on single images; --loss_type kto on single images with a per-image label column)`);
    }
    if (method === 'kto' && !source.pairs && !source.imageLabels) {
      throw new DatasetError(`${source.description}: single images without a per-image 'label' column; KTO needs like/dislike labels (a JSONL/CSV table or metadata.jsonl with label 1/0) or preference pairs`);
    }
    const meta = await source.scanMeta();
    const bad: Partial<Record<BadReason, number>> = {};
    const badRows: BadRow[] = [];
    const count = (r: BadReason, row?: number, detail?: string) => {
      bad[r] = (bad[r] ?? 0) + 1;
      if (row !== undefined) badRows.push({ row, reason: r, ...(detail ? { detail } : {}) });
    };
    const exclude = o.excludeRows ?? new Set<number>();
    let ties = 0;
    let excluded = 0;
    let indices: number[] = [];
    meta.forEach((m, i) => {
      if (exclude.has(i)) {
        excluded++;
        return;
      }
      const valid = (v: number | null) => v === 0 || v === 0.5 || v === 1;
      if (!valid(m.label0) || (m.label1 !== null && !valid(m.label1))) {
        count('bad_label', i, `label_0 = ${String(m.label0)}, label_1 = ${String(m.label1)}`);
        return;
      }
      if (m.label0 === 0.5) {
        ties++;
        return;
      }
      // SFT learns from the desirable images of labelled single images only
      if (method === 'sft' && !source.pairs && m.label0 === 0) {
        count('undesirable');
        return;
      }
      if (o.dreamlikePairsOnly) {
        if (m.model0 === undefined || m.model1 === undefined) {
          count('missing_column', i, '--dreamlike_pairs_only needs the model_0 and model_1 columns');
          return;
        }
        if (!(m.model0 ?? '').includes('dream') || !(m.model1 ?? '').includes('dream')) {
          count('not_dreamlike');
          return;
        }
      }
      indices.push(i);
    });
    if (o.maxTrainSamples !== undefined) {
      if (!(o.maxTrainSamples >= 0)) throw new DatasetError(`max_train_samples must be >= 0, got ${o.maxTrainSamples}`);
      indices = shuffled(indices, hash32(o.seed ?? 0, 0x5eed)).slice(0, o.maxTrainSamples);
    }
    const stats: DatasetStats = { source: source.description, rowsRead: meta.length, tiesRemoved: ties, excluded, kept: indices.length, bad, badRows };
    return new PreferenceDataset(source, indices, stats, method);
  }

  /** Images per sample: two for pairs (preferred first), one for SFT and for labelled single images. */
  get imagesPerSample(): 1 | 2 {
    return this.method === 'sft' || !this.source.pairs ? 1 : 2;
  }

  get length(): number {
    return this.indices.length;
  }
}
