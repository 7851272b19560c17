// A classifier of the demo's drawings from pixel statistics alone (no learned weights), used to
// check that a model draws what it is asked for:
//   background = the per-channel median of the border pixels;
//   the shape  = pixels further than a threshold from the background;
//   its colour = the palette colour nearest the shape pixels' mean;
//   its kind   = how much of its bounding box it fills (square ~1, circle ~pi/4, triangle ~1/2).
import type { RawImage } from '../data/pil_resize.js';
import { COLOUR_NAMES, SHAPE_COLOURS, type ShapeColour, type ShapeName } from './shapes.js';

/** Distance (RGB, 0-255 units) from the background beyond which a pixel belongs to the shape. */
const FOREGROUND_DISTANCE = 60;
/** Fewer shape pixels than this is no shape at all. */
const MIN_SHAPE_PIXELS = 12;

export interface Classification {
  colour: ShapeColour | null;
  shape: ShapeName | null;
  /** Shape pixels / bounding-box pixels. */
  fill: number;
  shapePixels: number;
}

function median(values: number[]): number {
  const s = values.slice().sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

export function classifyDrawing(img: RawImage): Classification {
  const { width: w, height: h, channels: ch, data } = img;
  const px = (x: number, y: number, c: number) => data[(y * w + x) * ch + c]!;
  const border: number[][] = [[], [], []];
  for (let x = 0; x < w; x++) for (const y of [0, h - 1]) for (let c = 0; c < 3; c++) border[c]!.push(px(x, y, c));
  for (let y = 1; y < h - 1; y++) for (const x of [0, w - 1]) for (let c = 0; c < 3; c++) border[c]!.push(px(x, y, c));
  const bg = border.map(median);
  let count = 0;
  const sum = [0, 0, 0];
  let [x0, y0, x1, y1] = [w, h, -1, -1];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const d = Math.hypot(px(x, y, 0) - bg[0]!, px(x, y, 1) - bg[1]!, px(x, y, 2) - bg[2]!);
      if (d <= FOREGROUND_DISTANCE) continue;
      count++;
      for (let c = 0; c < 3; c++) sum[c]! += px(x, y, c);
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
  }
  if (count < MIN_SHAPE_PIXELS) return { colour: null, shape: null, fill: 0, shapePixels: count };
  const mean = sum.map((s) => s / count);
  let colour: ShapeColour = COLOUR_NAMES[0]!;
  let best = Infinity;
  for (const name of COLOUR_NAMES) {
    const d = Math.hypot(...SHAPE_COLOURS[name].map((v, c) => v - mean[c]!));
    if (d < best) [best, colour] = [d, name];
  }
  const fill = count / ((x1 - x0 + 1) * (y1 - y0 + 1));
  const shape: ShapeName = fill > 0.88 ? 'square' : fill < 0.64 ? 'triangle' : 'circle';
  return { colour, shape, fill, shapePixels: count };
}

export interface RecognitionRate {
  images: number;
  colour: number;
  shape: number;
  /** Both right. */
  both: number;
}

/** The share of drawings whose colour, shape, and both, the classifier reads as prompted. */
export function recognitionRate(items: readonly { image: RawImage; colour: ShapeColour; shape: ShapeName }[]): RecognitionRate {
  let colour = 0;
  let shape = 0;
  let both = 0;
  for (const it of items) {
    const c = classifyDrawing(it.image);
    const okColour = c.colour === it.colour;
    const okShape = c.shape === it.shape;
    colour += +okColour;
    shape += +okShape;
    both += +(okColour && okShape);
  }
  const n = Math.max(1, items.length);
  return { images: items.length, colour: colour / n, shape: shape / n, both: both / n };
}

/** Chance levels of a classifier that guesses: one colour in six, one shape in three. */
export const CHANCE = { colour: 1 / COLOUR_NAMES.length, shape: 1 / 3, both: 1 / (3 * COLOUR_NAMES.length) };
