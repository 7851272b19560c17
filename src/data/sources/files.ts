// Users' own preference data: a JSONL or CSV table of {caption, image_0, image_1, label_0} with
// image paths relative to the table, or a folder of w/ (preferred) and l/ (dispreferred) images
// paired by file name, captions in <name>.txt files or a metadata.jsonl.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import type { ImageBytes, PairRow, PairSource, RowMeta } from '../record.js';

export class DataFileError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'DataFileError';
  }
}

interface FileRow {
  caption: string | null;
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
  constructor(readonly description: string, readonly rows: FileRow[]) {}
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

function toRow(o: Record<string, unknown>, base: string): FileRow {
  const path = (v: unknown) => (typeof v === 'string' && v ? resolve(base, v) : null);
  const label0 = asNumber(o.label_0);
  const label1 = o.label_1 !== undefined ? asNumber(o.label_1) : label0 === null ? null : 1 - label0;
  return { caption: typeof o.caption === 'string' ? o.caption : null, image0: path(o.image_0), image1: path(o.image_1), label0, label1 };
}

/** JSONL (one object per line) or CSV with a header row. Unparseable lines become bad rows, not errors. */
export function openTable(file: string): PairSource {
  if (!existsSync(file)) throw new DataFileError(file, 'no such file');
  const base = dirname(resolve(file));
  const text = readFileSync(file, 'utf8');
  const rows: FileRow[] = [];
  if (extname(file).toLowerCase() === '.csv') {
    let records: Record<string, string>[];
    try {
      records = parseCsv(text, { columns: true, skip_empty_lines: true, relax_column_count: true }) as Record<string, string>[];
    } catch (e) {
      throw new DataFileError(file, `not valid CSV (${(e as Error).message})`);
    }
    if (records.length && !('image_0' in records[0]!)) throw new DataFileError(file, 'the header has no image_0 column (expected caption,image_0,image_1,label_0)');
    for (const r of records) rows.push(toRow(r, base));
  } else {
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        rows.push(toRow(JSON.parse(line) as Record<string, unknown>, base));
      } catch {
        rows.push({ caption: null, image0: null, image1: null, label0: null, label1: null });
      }
    }
  }
  return new FileRowsSource(`${basename(file)}: ${rows.length} rows`, rows);
}

const IMAGE_EXT = /\.(jpe?g|png|webp|gif|tiff?|avif)$/i;

/** A folder with w/ and l/ images paired by file stem; captions from <stem>.txt or metadata.jsonl. */
export function openPairFolder(folder: string): PairSource {
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
        const o = JSON.parse(line) as { file_name?: string; caption?: string; text?: string };
        if (o.file_name) captions.set(stem(o.file_name), o.caption ?? o.text ?? '');
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
  return new FileRowsSource(`${folder}: ${rows.length} pairs`, rows);
}
