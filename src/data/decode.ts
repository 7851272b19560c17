// Image decoding to 8-bit RGB with sharp (libvips): JPEG, PNG, WebP, GIF, TIFF, AVIF. As PIL's
// convert('RGB') in the reference: grayscale is replicated to three channels and alpha is dropped
// (not composited). EXIF orientation is applied (a photo comes out the way it is viewed; Pick-a-Pic
// images carry none, so the reference's numbers are unaffected). Truncated or corrupt files throw.
import sharp from 'sharp';
import type { RawImage } from './pil_resize.js';
import { UserError } from '../util/errors.js';

export class ImageDecodeError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'ImageDecodeError';
  }
}

sharp.cache(false); // every image is decoded once; libvips' operation cache only costs memory here
sharp.concurrency(1); // parallelism comes from decoding several images at once

export async function decodeRGB(bytes: Uint8Array, o: { exifTranspose?: boolean } = {}): Promise<RawImage> {
  if (bytes.length === 0) throw new ImageDecodeError('empty image');
  try {
    let s = sharp(bytes, { failOn: 'truncated', limitInputPixels: 1 << 28 });
    if (o.exifTranspose ?? true) s = s.rotate();
    const { data, info } = await s.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new ImageDecodeError(`decoded to ${info.channels} channels, expected 3`);
    return { width: info.width, height: info.height, channels: 3, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  } catch (e) {
    if (e instanceof ImageDecodeError) throw e;
    throw new ImageDecodeError((e as Error).message.split('\n')[0]!);
  }
}

/**
 * For the reward models: 8-bit RGB, or RGBA when the image has an alpha channel (open_clip's
 * preprocessing resizes RGBA with premultiplied alpha before dropping it, as PIL does; grey with
 * alpha becomes RGBA with the grey replicated).
 */
export async function decodeForScoring(bytes: Uint8Array): Promise<RawImage> {
  if (bytes.length === 0) throw new ImageDecodeError('empty image');
  try {
    const s = sharp(bytes, { failOn: 'truncated', limitInputPixels: 1 << 28 }).rotate();
    const meta = await sharp(bytes).metadata();
    if (!meta.hasAlpha) return await decodeRGB(bytes);
    const { data, info } = await s.toColourspace('srgb').ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 4) throw new ImageDecodeError(`decoded to ${info.channels} channels, expected 4`);
    return { width: info.width, height: info.height, channels: 4, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  } catch (e) {
    if (e instanceof ImageDecodeError) throw e;
    throw new ImageDecodeError((e as Error).message.split('\n')[0]!);
  }
}
