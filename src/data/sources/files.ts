// Users' own data: a JSONL or CSV table of {caption, image_0, image_1, label_0} with image paths
// relative to the table, or a folder of w/ (preferred) and l/ (dispreferred) images paired by file
// name, captions in <name>.txt files or a metadata.jsonl. For SFT, also single captioned images: a
// table with an image column instead of image_0/image_1, and Hugging Face's imagefolder layout
// (images beside a metadata.jsonl or metadata.csv whose file_name column names them).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import type { ImageBytes, PairRow, PairSource, RowMeta } from '../record.js';
import { UserError } from '../../util/errors.js';

export class DataFileError extends UserError {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'DataFileError';
  }
}

interface FileRow {
  caption: string | string[] | null;
  image0: string | null;
  image1: string | null;
  label0: number | null;
  label1: number | null;
}

async function readImage(path: string | null, what: string): Promise<ImageBytes> {
  if (!path) return { missing: `${what} is empty` };
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    return { missing: `${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` };
  }
}

class FileRowsSource implements PairSource {
  constructor(readonly description: string, readonly rows: FileRow[], readonly pairs = true, readonly imageLabels = false) {}
  get size(): number {
    return this.rows.length;
  }
  async scanMeta(): Promise<RowMeta[]> {
    return this.rows.map((r) => ({ caption: r.caption, label0: r.label0, label1: r.label1 }));
  }
  async read(indices: number[]): Promise<PairRow[]> {
    return Promise.all(indices.map(async (i) => {
      const r = this.rows[i]!;
      const [image0, image1] = await Promise.all([readImage(r.image0, 'image_0'), readImage(r.image1, 'image_1')]);
      return { caption: r.caption, label0: r.label0, label1: r.label1, image0, image1 };
    }));
  }
}

const asNumber = (v: unknown): number | null => {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
  return null;
};

/** Which columns a table's rows are read from. */
export interface TableColumns {
  caption: string;
  /** The image of single-image rows (SFT); pair rows use image_0/image_1. */
  image: string;
}

const DEFAULT_TABLE_COLUMNS: TableColumns = { caption: 'caption', image: 'image' };

/** A caption, or a list of them (one is chosen per sample, as diffusers' text-to-image scripts do); anything else is none. */
function captionOf(v: unknown): string | string[] | null {
  if (typeof v === 'string') return v;
  return Array.isArray(v) && v.length > 0 && v.every((c) => typeof c === 'string') ? (v as string[]) : null;
}

function toRow(o: Record<string, unknown>, base: string, cols: TableColumns, pairs: boolean): FileRow {
  const path = (v: unknown) => (typeof v === 'string' && v ? resolve(base, v) : null);
  if (!pairs) {
    // a single image is desirable unless its row says otherwise (unpaired like/dislike data, for KTO)
    const label0 = o.label === undefined ? 1 : imageLabel(o.label);
    return { caption: captionOf(o[cols.caption]), image0: path(o[cols.image]), image1: null, label0, label1: label0 === null ? null : 1 - label0 };
  }
  const label0 = asNumber(o.label_0);
  const label1 = o.label_1 !== undefined ? asNumber(o.label_1) : label0 === null ? null : 1 - label0;
  return { caption: captionOf(o[cols.caption]), image0: path(o.image_0), image1: path(o.image_1), label0, label1 };
}

/** A per-image label: 1/true/"up"/"like" desirable, 0/false/"down"/"dislike" undesirable; anything else is bad (null). */
function imageLabel(v: unknown): number | null {
  if (v === true || v === 1 || (typeof v === 'string' && /^(1|true|up|like|yes)$/i.test(v.trim()))) return 1;
  if (v === false || v === 0 || (typeof v === 'string' && /^(0|false|down|dislike|no)$/i.test(v.trim()))) return 0;
  return null;
}

function readRecords(file: string): (Record<string, unknown> | null)[] {
  const text = readFileSync(file, 'utf8');
  if (extname(file).toLowerCase() === '.csv') {
    try {
      return parseCsv(text, { columns: true, skip_empty_lines: true, relax_column_count: true }) as Record<string, string>[];
    } catch (e) {
      throw new DataFileError(file, `not valid CSV (${(e as Error).message})`);
    }
  }
  return text.split('\n').filter((line) => line.trim()).map((line) => {
    try {
      const o = JSON.parse(line) as unknown;
      return o && typeof o === 'object' && !Array.isArray(o) ? (o as Record<string, unknown>) : null;
    } catch {
      return null; // an unparseable line is a bad row, counted, not an error
    }
  });
}

/**
 * JSONL (one object per line) or CSV with a header row: preference pairs when the rows have
 * image_0, else single captioned images from the image column. Unparseable lines become bad rows.
 */
export function openTable(file: string, columns: Partial<TableColumns> = {}): PairSource {
  if (!existsSync(file)) throw new DataFileError(file, 'no such file');
  const cols = { ...DEFAULT_TABLE_COLUMNS, ...columns };
  const base = dirname(resolve(file));
  const records = readRecords(file);
  const good = records.filter((r): r is Record<string, unknown> => r !== null);
  const has = (col: string) => good.some((r) => col in r);
  const pairs = good.length === 0 || has('image_0') || !has(cols.image);
  if (good.length && pairs && !has('image_0')) {
    throw new DataFileError(file, `no row has image_0 (preference pairs: caption,image_0,image_1,label_0) or the image column '${cols.image}' (single images)`);
  }
  if (good.length && !has(cols.caption)) throw new DataFileError(file, `no row has the caption column '${cols.caption}' (columns: ${Object.keys(good[0]!).join(', ')})`);
  const empty: FileRow = { caption: null, image0: null, image1: null, label0: null, label1: null };
  const rows = records.map((r) => (r ? toRow(r, base, cols, pairs) : empty));
  const labelled = !pairs && has('label');
  return new FileRowsSource(`${basename(file)}: ${rows.length} ${pairs ? 'rows' : labelled ? 'labelled single images' : 'single images'}`, rows, pairs, labelled);
}

/**
 * Hugging Face's imagefolder layout: images with a metadata.jsonl (or metadata.csv) whose file_name
 * column names them (the 'image' column of the loaded dataset). Single images, for SFT.
 */
export function openImageFolder(folder: string, columns: Partial<TableColumns> = {}): PairSource | null {
  const meta = ['metadata.jsonl', 'metadata.csv'].map((f) => join(folder, f)).find((f) => existsSync(f));
  if (!meta) return null;
  const image = columns.image === undefined || columns.image === 'image' ? 'file_name' : columns.image;
  return openTable(meta, { ...columns, image });
}

const IMAGE_EXT = /\.(jpe?g|png|webp|gif|tiff?|avif)$/i;

/** A folder with w/ and l/ images paired by file stem; captions from <stem>.txt or metadata.jsonl. */
export function openPairFolder(folder: string, captionColumn = 'caption'): PairSource {
  const w = join(folder, 'w');
  const l = join(folder, 'l');
  if (!existsSync(w) || !existsSync(l)) throw new DataFileError(folder, 'expected w/ and l/ subfolders of preferred and dispreferred images');
  const stem = (f: string) => basename(f, extname(f));
  const losers = new Map(readdirSync(l).filter((f) => IMAGE_EXT.test(f)).map((f) => [stem(f), join(l, f)]));
  const captions = new Map<string, string>();
  const meta = join(folder, 'metadata.jsonl');
  if (existsSync(meta)) {
    for (const line of readFileSync(meta, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      try {
        const o = JSON.parse(line) as Record<string, unknown>;
        const caption = o[captionColumn] ?? (captionColumn === 'caption' ? o.text : undefined);
        if (typeof o.file_name === 'string') captions.set(stem(o.file_name), typeof caption === 'string' ? caption : '');
      } catch {
        // a bad metadata line leaves that pair without a caption: it is counted as null_caption
      }
    }
  }
  const rows: FileRow[] = readdirSync(w).filter((f) => IMAGE_EXT.test(f)).sort().map((f) => {
    const s = stem(f);
    let caption = captions.get(s) ?? null;
    for (const txt of [join(folder, `${s}.txt`), join(w, `${s}.txt`)]) {
      if (caption === null && existsSync(txt)) caption = readFileSync(txt, 'utf8').trim();
    }
    return { caption, image0: join(w, f), image1: losers.get(s) ?? null, label0: 1, label1: 0 };
  });
  return new FileRowsSource(`${folder}: ${rows.length} pairs`, rows, true);
}
