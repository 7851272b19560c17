// The demo's preference dataset, in Pick-a-Pic v2's schema (caption, jpg_0, jpg_1, label_0,
// label_1, model_0, model_1) as parquet shards in the Hub's layout (data/train-0000k-of-0000n.parquet),
// so the demo reads it through the same reader as the real dataset. Each row is two drawings of
// the same caption, made independently (place, size, background), labelled the way Pick-a-Pic's
// users label: the one they prefer gets 1. Here the "user" is the warmth rule of demo_oracle, so
// the preference is one a person can see: the warmer drawing wins (mostly a matter of the
// background, which no caption names). The held-out captions
// (shapes.heldOutCaptions) never appear, so the evaluation asks for drawings DPO saw no pair of.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { parquetWriteBuffer } from 'hyparquet-writer';
import type { RawImage } from '../data/pil_resize.js';
import { Rng } from '../data/rng.js';
import { writeFileAtomic } from '../models/loading.js';
import { warmth } from '../scoring/demo_oracle.js';
import { allCaptions, heldOutCaptions, randomSpec, renderShape } from './shapes.js';

/** What the rows say made their images (Pick-a-Pic names the generating model). */
export const DEMO_RENDERER = 'diffusion-dpo/demo-shapes-renderer';

const SCHEMA = [
  { name: 'root', num_children: 7 },
  { name: 'caption', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
  { name: 'jpg_0', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
  { name: 'jpg_1', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
  { name: 'label_0', type: 'DOUBLE', repetition_type: 'OPTIONAL' },
  { name: 'label_1', type: 'DOUBLE', repetition_type: 'OPTIONAL' },
  { name: 'model_0', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
  { name: 'model_1', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
];

interface Row {
  caption: string;
  jpg0: Uint8Array;
  jpg1: Uint8Array;
  label0: number;
}

/** JPEG as Pick-a-Pic stores its images; full-resolution chroma so 32 px colours stay put. */
async function jpeg(img: RawImage): Promise<Uint8Array> {
  const buf = await sharp(Buffer.from(img.data), { raw: { width: img.width, height: img.height, channels: 3 } }).jpeg({ quality: 95, chromaSubsampling: '4:4:4' }).toBuffer();
  return new Uint8Array(buf);
}

export interface PreferenceSetSummary {
  folder: string;
  shards: string[];
  rows: number;
  /** Rows whose preferred image is stored first. */
  label0Preferred: number;
  /** Rows whose two drawings are exactly as warm (label 0.5 each, as Pick-a-Pic's ties). */
  ties: number;
  captions: string[];
}

/** Writes `pairs` rows over `shards` shards under `folder`/data; returns what was written. */
export async function writeDemoPreferenceSet(folder: string, o: { pairs: number; shards?: number; seed?: number }): Promise<PreferenceSetSummary> {
  const rng = new Rng(o.seed ?? 0);
  const held = new Set(heldOutCaptions());
  const training = allCaptions().filter((c) => !held.has(c.caption));
  const rows: Row[] = [];
  for (let i = 0; i < o.pairs; i++) {
    const c = training[i % training.length]!;
    const a = renderShape(randomSpec(rng, c.colour, c.shape));
    const b = renderShape(randomSpec(rng, c.colour, c.shape));
    const diff = warmth(a) - warmth(b);
    rows.push({ caption: c.caption, jpg0: await jpeg(a), jpg1: await jpeg(b), label0: diff > 0 ? 1 : diff < 0 ? 0 : 0.5 });
  }
  const n = Math.max(1, o.shards ?? 2);
  mkdirSync(join(folder, 'data'), { recursive: true });
  const shards: string[] = [];
  const per = Math.ceil(rows.length / n);
  for (let k = 0; k < n; k++) {
    const part = rows.slice(k * per, (k + 1) * per);
    const buf = parquetWriteBuffer({
      columnData: [
        { name: 'caption', data: part.map((r) => r.caption) },
        { name: 'jpg_0', data: part.map((r) => r.jpg0) },
        { name: 'jpg_1', data: part.map((r) => r.jpg1) },
        { name: 'label_0', data: part.map((r) => r.label0) },
        { name: 'label_1', data: part.map((r) => 1 - r.label0) },
        { name: 'model_0', data: part.map(() => DEMO_RENDERER) },
        { name: 'model_1', data: part.map(() => DEMO_RENDERER) },
      ],
      schema: SCHEMA as never,
      rowGroupSize: 64,
    });
    const path = join(folder, 'data', `train-${String(k).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.parquet`);
    writeFileAtomic(path, Buffer.from(buf));
    shards.push(path);
  }
  const summary: PreferenceSetSummary = {
    folder, shards, rows: rows.length, label0Preferred: rows.filter((r) => r.label0 === 1).length, ties: rows.filter((r) => r.label0 === 0.5).length,
    captions: training.map((c) => c.caption),
  };
  writeFileAtomic(join(folder, 'README.md'), `# demo preference set\n\n${rows.length} Pick-a-Pic-schema rows in ${n} parquet shards: two drawings of one caption, the warmer (demo_oracle) preferred.\nCaptions: ${summary.captions.join(', ')}.\nHeld out for evaluation: ${[...held].join(', ')}.\n`);
  return summary;
}
