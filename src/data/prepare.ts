// One image through the pipeline: bytes -> decoded RGB -> the reference's transforms. Shared by the
// main thread (dataloader_num_workers 0) and the worker threads.
import { decodeRGB } from './decode.js';
import { centerCrop, cropAndFlip, randomCrop } from './transforms.js';

export interface PrepareJob {
  bytes: Uint8Array;
  resolution: number;
  /** Uniform [0, 1) draws for a random crop; null for a center crop. */
  crop: [number, number] | null;
  hflip: boolean;
}

/** The image as CHW uint8 after resize, crop and flip. */
export async function prepareImage(job: PrepareJob): Promise<Uint8Array> {
  const img = await decodeRGB(job.bytes);
  const crop = job.crop;
  return cropAndFlip(img, {
    resolution: job.resolution,
    crop: crop ? (w, h, s) => randomCrop(w, h, s, crop[0], crop[1]) : centerCrop,
    hflip: job.hflip,
  }).pixels;
}
