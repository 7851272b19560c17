// Pick-a-Pic v2 parquet shards (the Hub dataset's schema: caption, jpg_0, jpg_1 as binary or as the
// HF Image struct {bytes, path}, label_0, label_1, model_0, model_1, ...). Only footers and the
// small columns are read up front; images are read per requested row, page by page, so a 500 MB
// shard is never held in memory.
import { asyncBufferFromFile, cachedAsyncBuffer, parquetMetadataAsync, parquetReadObjects, type AsyncBuffer, type FileMetaData } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import type { ImageBytes, PairRow, PairSource, RowMeta } from '../record.js';
import { UserError } from '../../util/errors.js';

export interface PreferenceColumns {
  caption: string;
  image0: string;
  image1: string;
  label0: string;
  label1: string;
  model0: string;
  model1: string;
}

/** The Pick-a-Pic v2 column names (overridable for other datasets of the same shape). */
export const PICKAPIC_COLUMNS: PreferenceColumns = {
  caption: 'caption', image0: 'jpg_0', image1: 'jpg_1', label0: 'label_0', label1: 'label_1', model0: 'model_0', model1: 'model_1',
};

interface Shard {
  path: string;
  file: AsyncBuffer;
  metadata: FileMetaData;
  rows: number;
  offset: number;
  columns: Set<string>;
}

export class ParquetShardError extends UserError {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'ParquetShardError';
  }
}

function toBytes(v: unknown, what: string): ImageBytes {
  if (v instanceof Uint8Array) return v.length ? v : { missing: `${what} is empty` };
  if (v && typeof v === 'object' && 'bytes' in v) return toBytes((v as { bytes: unknown }).bytes, what); // HF Image struct
  if (typeof v === 'string' && v.length) return Buffer.from(v, 'latin1');
  return { missing: `${what} is null` };
}
const num = (v: unknown): number | null => (typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : null);
const str = (v: unknown): string | null => (typeof v === 'string' ? v : v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : null);

export class ParquetPairSource implements PairSource {
  readonly size: number;
  private constructor(readonly shards: Shard[], readonly cols: PreferenceColumns, readonly pairs: boolean) {
    this.size = shards.reduce((s, x) => s + x.rows, 0);
  }

  get description(): string {
    return `${this.shards.length} parquet shard(s), ${this.size} ${this.pairs ? 'rows' : `single images (column ${this.cols.image0})`}`;
  }

  /**
   * Shards of preference pairs (the image0/image1 columns), or, when they have no image0 column
   * but have `singleImageColumn`, single captioned images (SFT datasets such as an HF Image column).
   */
  static async open(paths: string[], cols: PreferenceColumns = PICKAPIC_COLUMNS, singleImageColumn?: string): Promise<ParquetPairSource> {
    const shards: Shard[] = [];
    let offset = 0;
    for (const path of paths) {
      let file: AsyncBuffer;
      let metadata: FileMetaData;
      try {
        file = cachedAsyncBuffer(await asyncBufferFromFile(path));
        metadata = await parquetMetadataAsync(file);
      } catch (e) {
        throw new ParquetShardError(path, `cannot read as parquet (${(e as Error).message})`);
      }
      const rows = Number(metadata.num_rows);
      const columns = new Set(metadata.schema.slice(1).map((s) => s.name));
      shards.push({ path, file, metadata, rows, offset, columns });
      offset += rows;
    }
    const first = shards[0]?.columns ?? new Set<string>();
    if (!first.has(cols.image0) && singleImageColumn && first.has(singleImageColumn)) {
      return new ParquetPairSource(shards, { ...cols, image0: singleImageColumn }, false);
    }
    if (!first.has(cols.image0) && singleImageColumn) {
      throw new ParquetShardError(paths[0]!, `neither the pair column ${cols.image0} nor the image column ${singleImageColumn} is there (columns: ${[...first].join(', ')})`);
    }
    return new ParquetPairSource(shards, cols, true);
  }

  #locate(index: number): { shard: Shard; row: number } {
    let lo = 0;
    let hi = this.shards.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.shards[mid]!.offset <= index) lo = mid;
      else hi = mid - 1;
    }
    const shard = this.shards[lo]!;
    return { shard, row: index - shard.offset };
  }

  async #read(shard: Shard, columns: string[], rowStart: number, rowEnd: number, utf8: boolean): Promise<Record<string, unknown>[]> {
    const present = columns.filter((c) => shard.columns.has(c));
    if (present.length === 0) return Array.from({ length: rowEnd - rowStart }, () => ({}));
    try {
      return (await parquetReadObjects({ file: shard.file, metadata: shard.metadata, columns: present, rowStart, rowEnd, utf8, compressors })) as Record<string, unknown>[];
    } catch (e) {
      throw new ParquetShardError(shard.path, `cannot read rows ${rowStart}-${rowEnd} (${(e as Error).message})`);
    }
  }

  async scanMeta(): Promise<RowMeta[]> {
    const c = this.cols;
    if (!this.pairs) return Array.from({ length: this.size }, () => ({ caption: '', label0: 1, label1: 0 }));
    const out: RowMeta[] = [];
    for (const shard of this.shards) {
      // one row group at a time: the label and model columns only
      let start = 0;
      for (const rg of shard.metadata.row_groups) {
        const end = start + Number(rg.num_rows);
        const rows = await this.#read(shard, [c.label0, c.label1, c.model0, c.model1], start, end, true);
        for (const r of rows) {
          out.push({
            caption: '', label0: num(r[c.label0]), label1: num(r[c.label1]),
            model0: shard.columns.has(c.model0) ? str(r[c.model0]) : undefined, model1: shard.columns.has(c.model1) ? str(r[c.model1]) : undefined,
          });
        }
        start = end;
      }
    }
    return out;
  }

  async read(indices: number[]): Promise<PairRow[]> {
    const c = this.cols;
    return Promise.all(indices.map(async (index) => {
      const { shard, row } = this.#locate(index);
      const [meta] = await this.#read(shard, [c.caption, c.label0, c.label1], row, row + 1, true);
      const [images] = await this.#read(shard, this.pairs ? [c.image0, c.image1] : [c.image0], row, row + 1, false);
      const caption = meta![c.caption];
      const image = (col: string) => (shard.columns.has(col) ? toBytes(images![col], col) : { missing: `column ${col} is missing from ${shard.path}` });
      return {
        caption: !shard.columns.has(c.caption) ? null : typeof caption === 'string' ? caption : Array.isArray(caption) ? caption.map(String) : null,
        label0: this.pairs ? num(meta![c.label0]) : 1, label1: this.pairs ? num(meta![c.label1]) : 0,
        image0: image(c.image0),
        image1: this.pairs ? image(c.image1) : { missing: 'a single-image row has no second image' },
      };
    }));
  }
}
