// kind "image_preprocess": decoding + the reference's train transforms on the fixture images.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../../torch/index.js';
import { decodeRGB } from '../../data/decode.js';
import { transformImage } from '../../data/transforms.js';
import type { FixtureCase } from '../case.js';
import { compareTensors, type Comparison } from '../compare.js';

interface ImageCaseJson {
  images: { file: string; outputs: Record<string, { resized_wh: [number, number]; crop_top: number; crop_left: number }> }[];
}

export async function runImagePreprocessCase(c: FixtureCase): Promise<Comparison[]> {
  const j = c.json as unknown as ImageCaseJson;
  const out: Comparison[] = [];
  const exact = { atol: 1e-6, rtol: 0 };
  for (const [i, spec] of j.images.entries()) {
    const img = await decodeRGB(readFileSync(join(c.root, spec.file)));
    torch.tidy(() => {
      const prefix = `img${i}`;
      if (c.has(`${prefix}.decoded_rgb_hwc_0_255`)) {
        out.push(compareTensors(`${prefix}.decoded_rgb_hwc_0_255`, torch.fromTypedArray(img.data, [img.height, img.width, 3]).float(), c.tensor(`${prefix}.decoded_rgb_hwc_0_255`), { atol: 0, rtol: 0 }));
      }
      for (const res of Object.keys(spec.outputs)) {
        const resolution = Number(res.replace('res', ''));
        const plain = transformImage(img, { resolution });
        const r = plain.resized;
        out.push(compareTensors(`${prefix}.${res}.resized_hwc_0_255`, torch.fromTypedArray(r.data, [r.height, r.width, 3]).float(), c.tensor(`${prefix}.${res}.resized_hwc_0_255`), { atol: 0, rtol: 0 }));
        out.push(compareTensors(`${prefix}.${res}.pixel_values`, torch.fromTypedArray(plain.pixels, [3, resolution, resolution]), c.tensor(`${prefix}.${res}.pixel_values`), exact));
        if (c.has(`${prefix}.${res}.pixel_values_hflip`)) {
          const flipped = transformImage(img, { resolution, hflip: true });
          out.push(compareTensors(`${prefix}.${res}.pixel_values_hflip`, torch.fromTypedArray(flipped.pixels, [3, resolution, resolution]), c.tensor(`${prefix}.${res}.pixel_values_hflip`), exact));
        }
      }
    });
  }
  return out;
}
