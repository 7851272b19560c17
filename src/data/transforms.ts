// The reference's train_transforms (DiffusionDPO train.py, torchvision on PIL images):
//   Resize(resolution, BILINEAR) -> CenterCrop / RandomCrop(resolution) -> RandomHorizontalFlip
//   -> ToTensor -> Normalize([0.5], [0.5])
// on 8-bit RGB, producing CHW float32 in [-1, 1] with torchvision's exact arithmetic. The loader
// stops before ToTensor's scaling (uint8 CHW); the scaling runs on the training device.
import { pilResize, type RawImage } from './pil_resize.js';

/** torchvision Resize(int): the shorter side becomes `size`, the longer int(size * long / short). */
export function resizedSize(width: number, height: number, size: number): [number, number] {
  if (width <= height) return [size, Math.trunc((size * height) / width)];
  return [Math.trunc((size * width) / height), size];
}

/** Python's round(): halves go to the even neighbour. */
export function pyRound(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export interface Crop {
  top: number;
  left: number;
}

/** torchvision center_crop offsets: int(round((dim - crop) / 2)). */
export function centerCrop(width: number, height: number, size: number): Crop {
  return { top: pyRound((height - size) / 2), left: pyRound((width - size) / 2) };
}

/** A uniformly random crop from a [0, 1) source (ours: deterministic per sample, see loader). */
export function randomCrop(width: number, height: number, size: number, u1: number, u2: number): Crop {
  return { top: Math.floor(u1 * (height - size + 1)), left: Math.floor(u2 * (width - size + 1)) };
}

export interface TransformOptions {
  resolution: number;
  /** Crop offsets; default center. */
  crop?: (w: number, h: number, size: number) => Crop;
  hflip?: boolean;
}

/**
 * Decoded RGB -> resized, cropped and flipped, as CHW uint8 (ToTensor's layout before its scaling).
 * Batches travel in this form, four times smaller than float32, and are normalised where they are
 * used (on the training device: `normalizePixels`' arithmetic, see train/batch_inputs.ts).
 * Returns the resized intermediate too (parity checks).
 */
export function cropAndFlip(img: RawImage, o: TransformOptions): { pixels: Uint8Array; resized: RawImage; crop: Crop } {
  const size = o.resolution;
  const [w, h] = resizedSize(img.width, img.height, size);
  const resized = pilResize(img, w, h, 'bilinear');
  const crop = (o.crop ?? centerCrop)(w, h, size);
  if (crop.top < 0 || crop.left < 0 || crop.top + size > h || crop.left + size > w) throw new RangeError(`crop ${JSON.stringify(crop)} outside ${w}x${h}`);
  const out = new Uint8Array(3 * size * size);
  const plane = size * size;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      // the flip happens after the crop: output column x reads crop column size - 1 - x
      const srcX = crop.left + (o.hflip ? size - 1 - x : x);
      const base = ((crop.top + y) * w + srcX) * 3;
      for (let c = 0; c < 3; c++) out[c * plane + y * size + x] = resized.data[base + c]!;
    }
  }
  return { pixels: out, resized, crop };
}

/** ToTensor then Normalize([0.5], [0.5]) of uint8 values: (x / 255 - 0.5) / 0.5 in float32, torchvision's arithmetic. */
export function normalizePixels(u8: Uint8Array): Float32Array {
  const f = Math.fround;
  const out = new Float32Array(u8.length);
  for (let i = 0; i < u8.length; i++) out[i] = f(f(f(u8[i]! / 255) - 0.5) / 0.5);
  return out;
}

/** Decoded RGB -> CHW float32 in [-1, 1]: the reference's whole train_transforms. */
export function transformImage(img: RawImage, o: TransformOptions): { pixels: Float32Array; resized: RawImage; crop: Crop } {
  const r = cropAndFlip(img, o);
  return { ...r, pixels: normalizePixels(r.pixels) };
}
