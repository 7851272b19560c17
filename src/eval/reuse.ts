// Which images of an earlier eval run can be used again: one whose PNG text chunks record the same
// model weights, prompt, seed and sampling settings as the image this run would make, at the same
// size. Anything else (another step count, guidance, scheduler, dtype, device, a retrained UNet in
// the same folder, an image from `sample`) is rendered again, so a report never mixes settings.
//
// The weights are identified by a fingerprint, not by the path given: the path of a model says
// nothing about whether it was retrained since. Weight files enter it by name, size and
// modification time (hashing gigabytes on every run would cost minutes), config and tokenizer
// files by content.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readPngText } from '../pipelines/png.js';

/** The folders of a pipeline whose files decide its images. */
const PIPELINE_PARTS = ['unet', 'vae', 'text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2', 'scheduler'];
const BY_CONTENT = /\.(json|txt)$/i;

function addFile(h: ReturnType<typeof createHash>, path: string, name: string): void {
  const st = statSync(path); // follows the Hub cache's symlinks to their blobs
  if (BY_CONTENT.test(name)) h.update(`${name}\0${createHash('sha256').update(readFileSync(path)).digest('hex')}\n`);
  else h.update(`${name}\0${st.size}\0${Math.round(st.mtimeMs)}\n`);
}

function addFolder(h: ReturnType<typeof createHash>, folder: string, prefix: string): void {
  for (const name of readdirSync(folder).sort()) {
    const p = join(folder, name);
    if (statSync(p).isFile()) addFile(h, p, `${prefix}${name}`);
  }
}

export type WeightsSource = { pipeline: string } | { folder: string } | { file: string };

/** A short hash of the files that decide a model's images (see the head of this file). */
export function weightsFingerprint(sources: readonly WeightsSource[]): string {
  const h = createHash('sha256');
  for (const s of sources) {
    if ('pipeline' in s) {
      h.update('pipeline\n');
      if (existsSync(join(s.pipeline, 'model_index.json'))) addFile(h, join(s.pipeline, 'model_index.json'), 'model_index.json');
      for (const part of PIPELINE_PARTS) if (existsSync(join(s.pipeline, part))) addFolder(h, join(s.pipeline, part), `${part}/`);
    } else if ('folder' in s) {
      h.update('folder\n');
      addFolder(h, s.folder, '');
    } else {
      h.update('file\n');
      addFile(h, s.file, 'file');
    }
  }
  return h.digest('hex').slice(0, 16);
}

/** Width and height from a PNG's IHDR, or null when the bytes are not a PNG. */
export function pngSize(png: Buffer): { width: number; height: number } | null {
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (png.length < 24 || !png.subarray(0, 8).equals(signature) || png.toString('latin1', 12, 16) !== 'IHDR') return null;
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

/**
 * Why the image at `file` cannot stand for the one described by `expected` (text chunks) and
 * `size`, or null when it can. The first difference is named, for the log.
 */
export function reuseMismatch(file: string, expected: Readonly<Record<string, string>>, size: { width: number; height: number }): string | null {
  if (!existsSync(file)) return 'missing';
  const png = readFileSync(file);
  const actual = pngSize(png);
  if (!actual) return 'not a PNG';
  let chunks: Record<string, string>;
  try {
    chunks = readPngText(png);
  } catch {
    return 'unreadable PNG text chunks';
  }
  for (const [k, v] of Object.entries(expected)) {
    if (chunks[k] !== v) return chunks[k] === undefined ? `no ${k} recorded` : `${k} was ${JSON.stringify(chunks[k])}, now ${JSON.stringify(v)}`;
  }
  if (actual.width !== size.width || actual.height !== size.height) return `size was ${actual.width}x${actual.height}, now ${size.width}x${size.height}`;
  return null;
}
