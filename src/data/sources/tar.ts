// WebDataset tar shards (the Pick-a-Pic v2 mirrors): one sample = the members sharing a key
// ("000123.jpg_0", "000123.jpg_1", "000123.json", ...). A shard is indexed by reading its 512-byte
// headers only (member data is skipped with a seek), then members are read by offset when a row is
// needed: random access without unpacking, and memory independent of the shard size.
// Scalar fields come from per-key members ("000123.label_0" holding "1") or from a JSON member.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { ImageBytes, PairRow, PairSource, RowMeta } from '../record.js';
import { UserError } from '../../util/errors.js';

export interface TarFields {
  image0: string;
  image1: string;
  /** A JSON member holding any of caption, label_0, label_1, model_0, model_1. */
  json: string;
  caption: string[];
  label0: string;
  label1: string;
  model0: string;
  model1: string;
}

export const PICKAPIC_TAR_FIELDS: TarFields = {
  image0: 'jpg_0', image1: 'jpg_1', json: 'json', caption: ['caption', 'txt'], label0: 'label_0', label1: 'label_1', model0: 'model_0', model1: 'model_1',
};

export class TarShardError extends UserError {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'TarShardError';
  }
}

interface Member {
  offset: number;
  size: number;
}
interface Sample {
  shard: number;
  members: Map<string, Member>;
}

function cstring(buf: Buffer, start: number, len: number): string {
  const end = buf.indexOf(0, start);
  return buf.toString('utf8', start, end < 0 || end > start + len ? start + len : end);
}
function octal(buf: Buffer, start: number, len: number): number {
  // base-256 (GNU) for sizes of 8 GB and more
  if (buf[start]! & 0x80) {
    let v = 0;
    for (let i = start + 1; i < start + len; i++) v = v * 256 + buf[i]!;
    return v;
  }
  const s = cstring(buf, start, len).trim();
  return s ? Number.parseInt(s, 8) : 0;
}

/** Member name, data offset and size of every regular file of a tar, from the headers alone. */
export function indexTar(path: string): { name: string; offset: number; size: number }[] {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new TarShardError(path, `cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const total = fstatSync(fd).size;
    const header = Buffer.alloc(512);
    const out: { name: string; offset: number; size: number }[] = [];
    let pos = 0;
    let longName: string | null = null;
    while (pos + 512 <= total) {
      readSync(fd, header, 0, 512, pos);
      if (header.every((b) => b === 0)) break; // end-of-archive blocks
      const stored = octal(header, 148, 8);
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : header[i]!;
      if (sum !== stored) throw new TarShardError(path, `corrupt tar header at byte ${pos} (checksum)`);
      const size = octal(header, 124, 12);
      const type = String.fromCharCode(header[156]!);
      const prefix = header.toString('utf8', 257, 262) === 'ustar' ? cstring(header, 345, 155) : '';
      let name = longName ?? (prefix ? `${prefix}/${cstring(header, 0, 100)}` : cstring(header, 0, 100));
      longName = null;
      const data = pos + 512;
      if (data + size > total) throw new TarShardError(path, `member '${name}' runs past the end of the file (truncated shard?)`);
      if (type === 'L' || type === 'x') {
        const body = Buffer.alloc(size);
        readSync(fd, body, 0, size, data);
        if (type === 'L') longName = cstring(body, 0, size);
        else {
          const m = body.toString('utf8').match(/\d+ path=([^\n]*)\n/);
          if (m) longName = m[1]!;
        }
      } else if (type === '0' || type === '\0') {
        out.push({ name, offset: data, size });
      }
      name = '';
      pos = data + Math.ceil(size / 512) * 512;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

/** WebDataset's key/extension split: the basename up to its first dot is the key's last part. */
export function splitKey(name: string): [string, string] | null {
  const slash = name.lastIndexOf('/');
  const dot = name.indexOf('.', slash + 1);
  if (dot < 0) return null;
  return [name.slice(0, dot), name.slice(dot + 1)];
}

export class TarPairSource implements PairSource {
  readonly pairs = true;
  readonly samples: Sample[] = [];
  readonly #fds: number[];

  private constructor(readonly paths: string[], readonly fields: TarFields) {
    this.#fds = paths.map((p) => openSync(p, 'r'));
  }

  static open(paths: string[], fields: Partial<TarFields> = {}): TarPairSource {
    const src = new TarPairSource(paths, { ...PICKAPIC_TAR_FIELDS, ...fields });
    paths.forEach((path, shard) => {
      const byKey = new Map<string, Sample>();
      for (const m of indexTar(path)) {
        const kv = splitKey(m.name);
        if (!kv) continue;
        let s = byKey.get(kv[0]);
        if (!s) {
          s = { shard, members: new Map() };
          byKey.set(kv[0], s);
          src.samples.push(s);
        }
        s.members.set(kv[1], { offset: m.offset, size: m.size });
      }
    });
    return src;
  }

  get size(): number {
    return this.samples.length;
  }
  get description(): string {
    return `${this.paths.length} tar shard(s), ${this.samples.length} samples`;
  }

  #bytes(s: Sample, ext: string): Buffer | null {
    const m = s.members.get(ext);
    if (!m) return null;
    const buf = Buffer.alloc(m.size);
    readSync(this.#fds[s.shard]!, buf, 0, m.size, m.offset);
    return buf;
  }

  #meta(s: Sample, withCaption: boolean): RowMeta {
    const f = this.fields;
    let json: Record<string, unknown> = {};
    const raw = this.#bytes(s, f.json);
    if (raw) {
      try {
        json = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
      } catch {
        json = {};
      }
    }
    const text = (ext: string, key: string): string | null => {
      const b = this.#bytes(s, ext);
      if (b) return b.toString('utf8').trim();
      const v = json[key];
      return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : null;
    };
    const num = (ext: string, key: string): number | null => {
      const t = text(ext, key);
      return t !== null && t !== '' && Number.isFinite(Number(t)) ? Number(t) : null;
    };
    let caption: string | null = null;
    if (withCaption) {
      for (const ext of f.caption) caption ??= text(ext, 'caption');
    }
    return { caption, label0: num(f.label0, 'label_0'), label1: num(f.label1, 'label_1'), model0: text(f.model0, 'model_0'), model1: text(f.model1, 'model_1') };
  }

  async scanMeta(): Promise<RowMeta[]> {
    return this.samples.map((s) => this.#meta(s, false));
  }

  async read(indices: number[]): Promise<PairRow[]> {
    return indices.map((i) => {
      const s = this.samples[i]!;
      const img = (ext: string): ImageBytes => {
        const b = this.#bytes(s, ext);
        return b && b.length ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : { missing: `no .${ext} member` };
      };
      return { ...this.#meta(s, true), image0: img(this.fields.image0), image1: img(this.fields.image1) };
    });
  }

  close(): void {
    for (const fd of this.#fds) closeSync(fd);
  }
}
