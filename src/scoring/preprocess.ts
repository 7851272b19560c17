// The two image preprocessings the reward models were trained with, on 8-bit RGB, to CHW float32
// with each library's arithmetic:
//   transformers' CLIPImageProcessor (4.30): resize the shortest edge to `size` (the longer one to
//     int(size · long / short)) with PIL's resampling (bicubic), center crop with top = (h − crop) // 2,
//     rescale u8 · (1/255) computed in float64 then cast to float32, normalize (x − mean) / std in float32
//   open_clip's eval transform (torchvision on PIL): Resize(size, BICUBIC) the same way, CenterCrop
//     with offsets int(round((h − crop) / 2)), ToTensor u8 / 255 in float32, Normalize in float32.
// The two differ only in the crop's rounding and the rescale's precision; both are exact ports.
import { pilResize, type PilFilter, type RawImage } from '../data/pil_resize.js';
import { centerCrop as torchvisionCenterCrop, resizedSize } from '../data/transforms.js';
import * as torch from '../torch/index.js';

export const OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

export interface ImagePreprocess {
  kind: 'clip_image_processor' | 'open_clip';
  /** The shortest edge after resizing. */
  size: number;
  cropHeight: number;
  cropWidth: number;
  mean: readonly number[];
  std: readonly number[];
  filter: PilFilter;
}

// PIL's resample codes (NEAREST 0 is not supported: no reward model uses it)
const PIL_FILTERS: Record<number, PilFilter> = { 4: 'box', 2: 'bilinear', 3: 'bicubic', 1: 'lanczos' };

/** A preprocessor_config.json of CLIPImageProcessor / CLIPFeatureExtractor. */
export function clipImageProcessorConfig(raw: Record<string, unknown>): ImagePreprocess {
  const size = raw.size;
  const shortest = typeof size === 'number' ? size : (size as { shortest_edge?: number } | undefined)?.shortest_edge;
  const crop = raw.crop_size;
  const [ch, cw] = typeof crop === 'number' ? [crop, crop] : [(crop as { height?: number })?.height, (crop as { width?: number })?.width];
  if (!shortest || !ch || !cw) throw new RangeError('preprocessor_config.json: expected size (or size.shortest_edge) and crop_size');
  for (const k of ['do_resize', 'do_center_crop', 'do_normalize', 'do_rescale'] as const) {
    if (raw[k] === false) throw new RangeError(`preprocessor_config.json: ${k} false is not supported`);
  }
  const filter = PIL_FILTERS[(raw.resample as number | undefined) ?? 3];
  if (!filter) throw new RangeError(`preprocessor_config.json: resample ${String(raw.resample)} is not supported`);
  const rescale = (raw.rescale_factor as number | undefined) ?? 1 / 255;
  if (Math.abs(rescale - 1 / 255) > 1e-12) throw new RangeError(`preprocessor_config.json: rescale_factor ${rescale} is not supported (1/255 only)`);
  return {
    kind: 'clip_image_processor', size: shortest, cropHeight: ch, cropWidth: cw,
    mean: (raw.image_mean as number[] | undefined) ?? OPENAI_CLIP_MEAN, std: (raw.image_std as number[] | undefined) ?? OPENAI_CLIP_STD, filter,
  };
}

/** open_clip's eval transform for a model of this image size (OpenAI mean and std, bicubic). */
export function openClipPreprocess(imageSize: number): ImagePreprocess {
  return { kind: 'open_clip', size: imageSize, cropHeight: imageSize, cropWidth: imageSize, mean: OPENAI_CLIP_MEAN, std: OPENAI_CLIP_STD, filter: 'bicubic' };
}

/** PIL's convert('RGB') of RGBA: the alpha channel dropped, not composited. */
export function dropAlpha(img: RawImage): RawImage {
  if (img.channels === 3) return img;
  const out = new Uint8Array(img.width * img.height * 3);
  for (let i = 0, j = 0; i < img.data.length; i += 4, j += 3) {
    out[j] = img.data[i]!;
    out[j + 1] = img.data[i + 1]!;
    out[j + 2] = img.data[i + 2]!;
  }
  return { width: img.width, height: img.height, channels: 3, data: out };
}

/** Pillow's RGBA -> RGBa: each colour times alpha / 255, rounded as its MULDIV255 does. */
function premultiply(img: RawImage): RawImage {
  const out = new Uint8Array(img.data.length);
  for (let i = 0; i < img.data.length; i += 4) {
    const a = img.data[i + 3]!;
    for (let c = 0; c < 3; c++) {
      const t = img.data[i + c]! * a + 128;
      out[i + c] = (t + (t >> 8)) >> 8;
    }
    out[i + 3] = a;
  }
  return { ...img, data: out };
}

/** Pillow's RGBa -> RGBA: each colour times 255 / alpha (integer division, clipped), kept where alpha is 0 or 255. */
function unpremultiply(img: RawImage): RawImage {
  const out = new Uint8Array(img.data.length);
  for (let i = 0; i < img.data.length; i += 4) {
    const a = img.data[i + 3]!;
    for (let c = 0; c < 3; c++) out[i + c] = a === 0 || a === 255 ? img.data[i + c]! : Math.min(255, Math.floor((255 * img.data[i + c]!) / a));
    out[i + 3] = a;
  }
  return { ...img, data: out };
}

/**
 * The resized and cropped uint8 HWC RGB image. transformers converts to RGB first; open_clip (PIL
 * under torchvision) resizes an RGBA image as Pillow does, with premultiplied alpha, crops, and
 * converts to RGB last, so transparent regions weigh as they do there.
 */
function resizeAndCrop(input: RawImage, p: ImagePreprocess): RawImage {
  const alpha = p.kind === 'open_clip' && input.channels === 4;
  const img = alpha ? premultiply(input) : dropAlpha(input);
  const [w, h] = resizedSize(img.width, img.height, p.size);
  const resized = pilResize(img, w, h, p.filter);
  const { top, left } = p.kind === 'open_clip'
    ? (p.cropHeight === p.cropWidth ? torchvisionCenterCrop(w, h, p.cropHeight) : { top: Math.round((h - p.cropHeight) / 2), left: Math.round((w - p.cropWidth) / 2) })
    : { top: Math.floor((h - p.cropHeight) / 2), left: Math.floor((w - p.cropWidth) / 2) };
  if (top < 0 || left < 0) throw new RangeError(`image ${w}x${h} after resizing is smaller than the ${p.cropWidth}x${p.cropHeight} crop`);
  const ch = img.channels;
  const out = new Uint8Array(p.cropHeight * p.cropWidth * ch);
  for (let y = 0; y < p.cropHeight; y++) {
    const src = ((top + y) * w + left) * ch;
    out.set(resized.data.subarray(src, src + p.cropWidth * ch), y * p.cropWidth * ch);
  }
  const cropped = { width: p.cropWidth, height: p.cropHeight, channels: ch, data: out };
  return alpha ? dropAlpha(unpremultiply(cropped)) : cropped;
}

/** One image (RGB, or RGBA: decodeForScoring) as the model's input, CHW float32 (on the CPU). */
export function preprocessImage(img: RawImage, p: ImagePreprocess): torch.Tensor {
  if (img.channels !== 3 && img.channels !== 4) throw new RangeError(`expected an RGB or RGBA image, got ${img.channels} channels`);
  const cropped = resizeAndCrop(img, p);
  return torch.tidy(() => {
    const hwc = torch.fromTypedArray(cropped.data, [p.cropHeight, p.cropWidth, 3]).permute(2, 0, 1);
    // transformers rescales in float64 and casts; torchvision divides in float32
    const scaled = p.kind === 'clip_image_processor' ? hwc.to({ dtype: 'float64' }).mul(1 / 255).float() : hwc.float().div(255);
    const mean = torch.tensor([...p.mean], { dtype: 'float32' }).view(3, 1, 1);
    const std = torch.tensor([...p.std], { dtype: 'float32' }).view(3, 1, 1);
    return scaled.sub(mean).div(std).contiguous();
  });
}

/** A batch (B, 3, H, W) of preprocessed images. */
export function preprocessBatch(images: readonly RawImage[], p: ImagePreprocess): torch.Tensor {
  return torch.tidy(() => torch.stack(images.map((i) => preprocessImage(i, p))));
}
