// Generates Pick-a-Pic-style parquet shards for tests: the real column names and types, several
// row groups, ties, dreamlike and other models, and, where asked, corrupt, truncated and missing
// images, null captions and labels outside {0, 0.5, 1}.
import { writeFileSync } from 'node:fs';
import sharp from 'sharp';
import { parquetWriteBuffer } from 'hyparquet-writer';

/** A small JPEG: the given colour with a horizontal gradient (so flips and crops are visible). */
export async function jpeg(rgb: [number, number, number], width = 40, height = 32): Promise<Uint8Array> {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const g = Math.round((x / (width - 1)) * 60);
      for (let c = 0; c < 3; c++) data[(y * width + x) * 3 + c] = Math.min(255, rgb[c]! + g);
    }
  }
  return new Uint8Array(await sharp(data, { raw: { width, height, channels: 3 } }).jpeg({ quality: 95 }).toBuffer());
}

export interface FakeRow {
  caption: string | null;
  jpg0: Uint8Array | null;
  jpg1: Uint8Array | null;
  label0: number;
  label1: number;
  model0: string;
  model1: string;
}

/** Rows whose preferred image is warm (red) and dispreferred cool (blue), with a tie every `tieEvery`. */
export async function makeRows(n: number, o: { tieEvery?: number; dreamEvery?: number } = {}): Promise<FakeRow[]> {
  const red = await jpeg([200, 40, 40]);
  const blue = await jpeg([40, 40, 200]);
  const rows: FakeRow[] = [];
  for (let i = 0; i < n; i++) {
    const tie = o.tieEvery !== undefined && i % o.tieEvery === 0;
    const swap = i % 2 === 1; // half the rows store the preferred image second (label_0 = 0)
    const dream = o.dreamEvery !== undefined && i % o.dreamEvery === 0;
    rows.push({
      caption: `row ${i}`,
      jpg0: swap ? blue : red,
      jpg1: swap ? red : blue,
      label0: tie ? 0.5 : swap ? 0 : 1,
      label1: tie ? 0.5 : swap ? 1 : 0,
      model0: dream ? 'dreamlike-art/dreamlike-photoreal-2.0' : 'stabilityai/stable-diffusion-xl-beta-v2-2-2',
      model1: dream ? 'dreamlike-art/dreamlike-diffusion-1.0' : 'runwayml/stable-diffusion-v1-5',
    });
  }
  return rows;
}

export function writeShard(path: string, rows: FakeRow[], o: { rowGroupSize?: number; imageStruct?: boolean } = {}): void {
  const image = (b: Uint8Array | null) => (o.imageStruct ? (b ? { bytes: b, path: null } : null) : b);
  const schema = [
    { name: 'root', num_children: 7 },
    { name: 'caption', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
    ...['jpg_0', 'jpg_1'].flatMap((name) => (o.imageStruct
      ? [{ name, repetition_type: 'OPTIONAL', num_children: 2 }, { name: 'bytes', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
        { name: 'path', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' }]
      : [{ name, type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' }])),
    { name: 'label_0', type: 'DOUBLE', repetition_type: 'OPTIONAL' },
    { name: 'label_1', type: 'DOUBLE', repetition_type: 'OPTIONAL' },
    { name: 'model_0', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
    { name: 'model_1', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
  ];
  const buf = parquetWriteBuffer({
    columnData: [
      { name: 'caption', data: rows.map((r) => r.caption) },
      { name: 'jpg_0', data: rows.map((r) => image(r.jpg0)) },
      { name: 'jpg_1', data: rows.map((r) => image(r.jpg1)) },
      { name: 'label_0', data: rows.map((r) => r.label0) },
      { name: 'label_1', data: rows.map((r) => r.label1) },
      { name: 'model_0', data: rows.map((r) => r.model0) },
      { name: 'model_1', data: rows.map((r) => r.model1) },
    ],
    schema: schema as never,
    rowGroupSize: o.rowGroupSize ?? 8,
  });
  writeFileSync(path, Buffer.from(buf));
}

/** A minimal ustar writer (regular files only), enough for WebDataset-style test shards. */
export function tarBuffer(members: { name: string; data: Uint8Array | string }[]): Buffer {
  const blocks: Buffer[] = [];
  for (const m of members) {
    const data = typeof m.data === 'string' ? Buffer.from(m.data) : Buffer.from(m.data);
    const h = Buffer.alloc(512);
    h.write(m.name, 0, 100, 'utf8');
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write('0', 156);
    h.write('ustar\0', 257);
    h.write('00', 263);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** Pick-a-Pic rows as a WebDataset shard: .jpg_0/.jpg_1 members, labels and caption in a .json member. */
export function writeTarShard(path: string, rows: FakeRow[]): void {
  const members = rows.flatMap((r, i) => {
    const key = String(i).padStart(6, '0');
    const out: { name: string; data: Uint8Array | string }[] = [];
    if (r.jpg0) out.push({ name: `${key}.jpg_0`, data: r.jpg0 });
    if (r.jpg1) out.push({ name: `${key}.jpg_1`, data: r.jpg1 });
    out.push({ name: `${key}.json`, data: JSON.stringify({ caption: r.caption, label_0: r.label0, label_1: r.label1, model_0: r.model0, model_1: r.model1 }) });
    return out;
  });
  writeFileSync(path, tarBuffer(members));
}
