// What a loader's row becomes: the random choices made for it, and the prepared sample. Samples
// come from the images (decoded, resized, cropped and flipped to uint8) or from a latent cache
// (src/cache/reader.ts: the encodings of the same views). Both draw the same choices from the
// same per-sample generator, so a run on the cache sees the views and captions an image run sees.
import type { HostTensor } from '../torch/io/safetensors.js';
import { ImageDecodeError } from './decode.js';
import type { BadReason, PairRow, PairSource } from './record.js';
import type { DataMethod } from './dataset.js';
import { hash32, Rng } from './rng.js';
import type { TransformPool } from './transform_pool.js';

/** A sample's random choices, drawn up front in a fixed order from a generator keyed by (seed, epoch, row). */
export interface SampleChoices {
  /** Per image, preferred first: uniform draws for a random crop, and whether to flip. */
  images: { crop: [number, number]; flip: boolean }[];
  /** Replace the caption by "" (--proportion_empty_prompts). */
  dropCaption: boolean;
  /** Uniform draw choosing one caption of a list. */
  listPick: number;
}

export function drawSampleChoices(seed: number, epoch: number, row: number, images: number, proportionEmptyPrompts: number): SampleChoices {
  const rng = new Rng(hash32(seed, epoch, row, 0xa11));
  const drawn = Array.from({ length: images }, () => ({ crop: [rng.next(), rng.next()] as [number, number], flip: rng.next() < 0.5 }));
  const dropCaption = rng.next() < proportionEmptyPrompts;
  return { images: drawn, dropCaption, listPick: rng.next() };
}

/** The caption a sample trains on: "" when dropped, else the chosen one of a list. */
export function chooseCaption(caption: string | string[], c: SampleChoices): string {
  if (c.dropCaption) return '';
  return Array.isArray(caption) ? caption[Math.floor(c.listPick * caption.length)]! : caption;
}

/** Cached encodings of a sample, images preferred first. */
export interface EncodedSample {
  /** Per image, the VAE posterior's parameters (mean and log-variance on the channel axis), [2C, h, w]. */
  moments: HostTensor[];
  /** The caption's text conditioning: SD [77, D]; SDXL both encoders' states side by side [77, D1 + D2]. */
  text: HostTensor;
  /** SDXL: the pooled text embeds [D2]. */
  pooled: HostTensor | null;
}

export interface PreparedSample {
  row: number;
  caption: string;
  /** From images: uint8 CHW of each image, preferred first, concatenated. */
  pixels?: Uint8Array;
  /** From a latent cache. */
  encoded?: EncodedSample;
  /** KTO on labelled single images: 1 desirable, 0 undesirable. */
  label?: number;
}

export type SampleOutcome = PreparedSample | { bad: BadReason; detail?: string };

/** Turns a row of the sequence into a sample (or says why it cannot be used). */
export interface SampleSource {
  prepare(row: number, epoch: number): Promise<SampleOutcome>;
}

export interface ImageSampleOptions {
  resolution: number;
  seed: number;
  randomCrop: boolean;
  hflip: boolean;
  proportionEmptyPrompts: number;
  method: DataMethod;
}

/** Samples from the images: read the row, check it, decode and transform its image(s) in the pool. */
export class ImageSamples implements SampleSource {
  constructor(readonly source: PairSource, readonly pool: TransformPool, readonly o: ImageSampleOptions) {}

  async prepare(rowIndex: number, epoch: number): Promise<SampleOutcome> {
    let row: PairRow;
    try {
      [row] = (await this.source.read([rowIndex])) as [PairRow];
    } catch (e) {
      // a row that cannot be read (a damaged parquet page, a truncated tar member) is a bad row, not a crash
      return { bad: 'unreadable_row', detail: (e as Error).message.split('\n')[0] };
    }
    if (row.caption === null || (Array.isArray(row.caption) && row.caption.length === 0)) return { bad: 'null_caption' };
    if (row.label0 === null || (row.label0 !== 0 && row.label0 !== 1)) return { bad: 'bad_label', detail: `label_0 = ${String(row.label0)}` };
    const preferredFirst = row.label0 !== 0;
    // labelled single images (KTO): the image and its label
    const single = !this.source.pairs;
    const images = single ? [row.image0] : this.o.method === 'sft' ? [preferredFirst ? row.image0 : row.image1] : preferredFirst ? [row.image0, row.image1] : [row.image1, row.image0];
    for (const img of images) {
      if (!(img instanceof Uint8Array)) return { bad: 'missing_image', detail: img.missing };
    }
    const c = drawSampleChoices(this.o.seed, epoch, rowIndex, images.length, this.o.proportionEmptyPrompts);
    let pixels: Uint8Array[];
    try {
      pixels = await Promise.all(images.map((img, k) => this.pool.run({
        bytes: img as Uint8Array, resolution: this.o.resolution,
        crop: this.o.randomCrop ? c.images[k]!.crop : null, hflip: this.o.hflip && c.images[k]!.flip,
      })));
    } catch (e) {
      if (e instanceof ImageDecodeError) return { bad: 'undecodable_image', detail: e.message };
      throw e;
    }
    const merged = new Uint8Array(pixels.reduce((s, p) => s + p.length, 0));
    let off = 0;
    for (const p of pixels) {
      merged.set(p, off);
      off += p.length;
    }
    return { pixels: merged, caption: chooseCaption(row.caption, c), row: rowIndex, ...(single && this.o.method === 'kto' ? { label: row.label0 } : {}) };
  }
}
