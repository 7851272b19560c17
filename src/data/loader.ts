// The preference data loader: per epoch a seeded permutation of the dataset's rows (global across
// shards, computed from indices alone), split across ranks (rank r takes positions r, r+W, ...),
// read, decoded and transformed with prefetch, and batched (the last incomplete batch dropped).
// A sample's random choices (crop, flip, caption dropout, which caption of a list) are drawn from
// a generator keyed by (seed, epoch, row), so they do not depend on worker timing (samples.ts:
// the same choices pick the cached views when the samples come from a latent cache).
//
// State is {epoch, cursor}: the cursor counts rows of this rank's sequence already consumed
// (including skipped bad rows), so restoring it resumes at exactly the next batch, in O(1).
//
// DPO batches hold [B, 6, H, W] pixels: the preferred image's 3 channels then the dispreferred
// one's (image 0 first unless label_0 == 0), as the reference concatenates them. SFT batches hold
// the preferred image, [B, 3, H, W]. Pixels are uint8 (resized, cropped, flipped): the scaling to
// [-1, 1] happens on the training device, after a copy a quarter the size of float32's.
import type { HostTensor } from '../torch/io/safetensors.js';
import type { PreferenceDataset } from './dataset.js';
import type { BadReason, BadRow } from './record.js';
import { hash32, shuffled } from './rng.js';
import { ImageSamples, type EncodedSample, type PreparedSample, type SampleOutcome, type SampleSource } from './samples.js';
import { TransformPool } from './transform_pool.js';

export interface LoaderOptions {
  batchSize: number;
  resolution: number;
  seed?: number;
  shuffle?: boolean;
  /** torchvision RandomCrop instead of CenterCrop. */
  randomCrop?: boolean;
  /** Random horizontal flip with p = 0.5 (the reference's default; --no_hflip turns it off). */
  hflip?: boolean;
  /** Probability of replacing a caption by "" (--proportion_empty_prompts). */
  proportionEmptyPrompts?: number;
  rank?: number;
  worldSize?: number;
  numWorkers?: number;
  /** Batches prepared ahead of the consumer. */
  prefetchBatches?: number;
  /**
   * Tokenisation hook (SD 1.x: the CLIP tokenizer's ids, padded to 77); SDXL passes raw captions
   * and tokenises in the training step, as the reference does.
   */
  tokenize?: ((captions: string[]) => number[][]) | null;
  /** Called for every row skipped as unusable (counted in badRows too). */
  onBadRow?: ((b: BadRow) => void) | null;
  /** Where samples come from; default: the dataset's images (a latent cache gives encoded samples). */
  samples?: SampleSource | null;
}

export interface Batch {
  /** [B, C, H, W] uint8, C = 6 (DPO pairs) or 3 (SFT); normalizePixels gives the reference's [-1, 1] values. Absent for encoded batches. */
  pixels?: Uint8Array;
  /** From a latent cache instead of pixels. */
  encoded?: EncodedBatch;
  /** The pixels' shape; for an encoded batch [B, 0, 0, 0] (the tensors carry their own). */
  shape: [number, number, number, number];
  captions: string[];
  /** Raw dataset row of each sample (for logs and tests). */
  rows: number[];
  /** KTO on labelled single images: each sample's label (1 desirable, 0 undesirable). */
  labels?: number[];
  /** Token ids of the captions, when a tokenize hook was given. */
  inputIds?: number[][];
  epoch: number;
  /** This batch's index within the epoch on this rank. */
  step: number;
}

/** A batch of cached encodings, laid out as pixels are: sample-major, images preferred first on the channel axis. */
export interface EncodedBatch {
  /** [B, images x 2C, h, w]: each image's posterior parameters (mean, log-variance). */
  moments: HostTensor;
  /** [B, 77, D]. */
  text: HostTensor;
  /** SDXL: [B, D2]. */
  pooled: HostTensor | null;
}

function stack(parts: HostTensor[], shape: number[]): HostTensor {
  return { dtype: parts[0]!.dtype, shape, data: Buffer.concat(parts.map((p) => p.data)) };
}

function collateEncoded(samples: EncodedSample[]): EncodedBatch {
  const b = samples.length;
  const m = samples[0]!.moments;
  const [c, h, w] = m[0]!.shape as [number, number, number];
  const text = samples[0]!.text;
  const pooled = samples[0]!.pooled;
  return {
    moments: stack(samples.flatMap((s) => s.moments), [b, m.length * c, h, w]),
    text: stack(samples.map((s) => s.text), [b, ...text.shape]),
    pooled: pooled ? stack(samples.map((s) => s.pooled!), [b, ...pooled.shape]) : null,
  };
}

export interface LoaderState {
  epoch: number;
  cursor: number;
  /** Batches yielded in the epoch (the step of the next batch). */
  step: number;
}

export class PairLoader {
  readonly #pool: TransformPool;
  readonly #samples: SampleSource;
  readonly #o: Required<LoaderOptions>;
  #state: LoaderState = { epoch: 0, cursor: 0, step: 0 };
  #sequence: number[] | null = null;
  #sequenceEpoch = -1;
  readonly badRows: Partial<Record<BadReason, number>> = {};
  /** Rows taken from the sequence so far in this process, usable or not. */
  rowsSeen = 0;

  constructor(readonly dataset: PreferenceDataset, o: LoaderOptions) {
    this.#o = {
      seed: 0, shuffle: true, randomCrop: false, hflip: true, proportionEmptyPrompts: 0, rank: 0, worldSize: 1,
      numWorkers: 0, prefetchBatches: 2, tokenize: null, onBadRow: null, samples: null, ...o,
    };
    if (!(this.#o.batchSize >= 1)) throw new RangeError('batch size must be >= 1');
    if (!(this.#o.rank >= 0 && this.#o.rank < this.#o.worldSize)) throw new RangeError(`rank ${this.#o.rank} outside world size ${this.#o.worldSize}`);
    this.#pool = new TransformPool(this.#o.samples ? 0 : this.#o.numWorkers);
    this.#samples = this.#o.samples ?? new ImageSamples(dataset.source, this.#pool, {
      resolution: this.#o.resolution, seed: this.#o.seed, randomCrop: this.#o.randomCrop, hflip: this.#o.hflip,
      proportionEmptyPrompts: this.#o.proportionEmptyPrompts, method: dataset.method,
    });
  }

  /** Batches per epoch on this rank if no row turns out bad (drop_last). */
  get stepsPerEpoch(): number {
    return Math.floor(Math.floor(this.dataset.length / this.#o.worldSize) / this.#o.batchSize);
  }

  state(): LoaderState {
    return { ...this.#state };
  }

  /** Resumes at a saved state: the next batch is the one an uninterrupted run would yield next. */
  setState(s: LoaderState): void {
    this.#state = { ...s };
    this.#window = [];
    this.#windowEpoch = -1;
  }

  /** This rank's row sequence of an epoch. */
  sequence(epoch: number): number[] {
    if (this.#sequenceEpoch !== epoch) {
      const order = this.#o.shuffle ? shuffled(this.dataset.indices, hash32(this.#o.seed, epoch, 0xda7a)) : this.dataset.indices;
      // every rank gets the same number of positions: the tail that does not divide is dropped
      const per = Math.floor(order.length / this.#o.worldSize);
      this.#sequence = Array.from({ length: per }, (_, i) => order[i * this.#o.worldSize + this.#o.rank]!);
      this.#sequenceEpoch = epoch;
    }
    return this.#sequence!;
  }

  #bad(reason: BadReason, row: number, detail?: string): void {
    this.badRows[reason] = (this.badRows[reason] ?? 0) + 1;
    this.#o.onBadRow?.({ row, reason, ...(detail ? { detail } : {}) });
  }

  /** Rows in flight, in sequence order, starting at sequence position #windowStart. */
  #window: { row: number; sample: Promise<SampleOutcome> }[] = [];
  #windowStart = 0;
  #windowEpoch = -1;

  #windowSize(): number {
    return Math.max(2, this.#o.prefetchBatches * this.#o.batchSize + 2 * this.#o.numWorkers);
  }

  #fill(epoch: number): void {
    const seq = this.sequence(epoch);
    while (this.#window.length < this.#windowSize() && this.#windowStart + this.#window.length < seq.length) {
      const row = seq[this.#windowStart + this.#window.length]!;
      const sample = this.#samples.prepare(row, epoch);
      sample.catch(() => undefined); // awaited in order by next(); an early rejection is not unhandled meanwhile
      this.#window.push({ row, sample });
    }
  }

  /**
   * The next batch of the current epoch, or null when the epoch is over (the state then moves to
   * the next epoch). Rows are prepared ahead in a window, in parallel; bad rows are skipped and
   * counted, and the next rows fill their places.
   */
  async next(): Promise<Batch | null> {
    const { epoch, step } = this.#state;
    if (this.#windowEpoch !== epoch || this.#windowStart !== this.#state.cursor) {
      this.#window = [];
      this.#windowStart = this.#state.cursor;
      this.#windowEpoch = epoch;
    }
    const b = this.#o.batchSize;
    const items: PreparedSample[] = [];
    while (items.length < b) {
      this.#fill(epoch);
      const head = this.#window.shift();
      if (!head) break;
      this.#windowStart++;
      this.rowsSeen++;
      // a bad row counts when the sequence reaches it, not when its prefetch resolves: the counts
      // at each step do not depend on timing
      const p = await head.sample;
      if ('bad' in p) this.#bad(p.bad, head.row, p.detail);
      else items.push(p);
    }
    if (items.length < b) {
      this.#state = { epoch: epoch + 1, cursor: 0, step: 0 };
      this.#window = [];
      return null;
    }
    this.#fill(epoch); // keep the next batch's rows in flight while this one is used
    this.#state = { epoch, cursor: this.#windowStart, step: step + 1 };
    const captions = items.map((i) => i.caption);
    const rows = items.map((i) => i.row);
    if (items[0]!.encoded) return { encoded: collateEncoded(items.map((i) => i.encoded!)), shape: [b, 0, 0, 0], captions, rows, epoch, step };
    const channels = 3 * this.dataset.imagesPerSample;
    const r = this.#o.resolution;
    const pixels = new Uint8Array(b * channels * r * r);
    items.forEach((it, i) => pixels.set(it.pixels!, i * channels * r * r));
    const batch: Batch = { pixels, shape: [b, channels, r, r], captions, rows, epoch, step };
    if (items[0]!.label !== undefined) batch.labels = items.map((i) => i.label!);
    if (this.#o.tokenize) batch.inputIds = this.#o.tokenize(captions);
    return batch;
  }

  /**
   * Ends the current epoch here (the state moves to the next epoch's start), as next() does when
   * the rows run out: multi-process training ends every rank's epoch when one rank's ends.
   */
  endEpoch(): void {
    this.#state = { epoch: this.#state.epoch + 1, cursor: 0, step: 0 };
    this.#window = [];
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.#window.map((w) => w.sample));
    this.#window = [];
    await this.#pool.close();
  }
}
