// Decoded images and Pillow-exact resizing of them (the kernel is native: src/torch/image.ts).
import { pilResize as resizePixels, type PilFilter } from '../torch/image.js';

export type { PilFilter };

export interface RawImage {
  width: number;
  height: number;
  channels: number;
  /** Row-major HWC uint8. */
  data: Uint8Array;
}

/** PIL Image.resize((outW, outH), filter), bit-identical. */
export function pilResize(img: RawImage, outW: number, outH: number, filter: PilFilter = 'bilinear'): RawImage {
  if (outW === img.width && outH === img.height) return { ...img, data: img.data.slice() };
  return { width: outW, height: outH, channels: img.channels, data: resizePixels(img.data, img.width, img.height, img.channels, outW, outH, filter) };
}
