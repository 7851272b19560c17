// Image helpers that are not tensor operators: Pillow-exact resampling of 8-bit HWC pixels
// (native/src/image.cc). Safe to call from worker threads (no tensors involved).
import { native } from './native.js';

export type PilFilter = 'box' | 'bilinear' | 'bicubic' | 'lanczos';
const FILTER_CODES: Record<PilFilter, number> = { box: 0, bilinear: 1, bicubic: 2, lanczos: 3 };

/** PIL's Image.resize((outWidth, outHeight), filter) on HWC uint8 pixels, bit for bit. */
export function pilResize(pixels: Uint8Array, width: number, height: number, channels: number, outWidth: number, outHeight: number, filter: PilFilter = 'bilinear'): Uint8Array {
  const code = FILTER_CODES[filter];
  if (code === undefined) throw new TypeError(`unknown resampling filter '${String(filter)}'`);
  return native.pilResize(pixels, width, height, channels, outWidth, outHeight, code);
}
