// Photo-like JPEGs for the data benchmarks: gradients plus noise, so they compress and decode like
// real images (a flat synthetic image would decode unrealistically fast).
import sharp from 'sharp';

/** A photo-like 768x640 JPEG (gradients plus noise, so it compresses like a real image). */
export async function photo(seed: number): Promise<Buffer> {
  const w = 768;
  const h = 640;
  const data = Buffer.alloc(w * h * 3);
  let s = seed * 2654435761;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      s = (s * 1103515245 + 12345) >>> 0;
      const noise = (s >>> 24) % 32;
      const i = (y * w + x) * 3;
      data[i] = (x * 255) / w + noise;
      data[i + 1] = (y * 255) / h + noise;
      data[i + 2] = ((x + y + seed * 17) % 256) ^ noise;
    }
  }
  return sharp(data, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

