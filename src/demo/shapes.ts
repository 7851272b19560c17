// The demo's synthetic image domain: one coloured shape on a plain background, 32 px, captioned
// "a <colour> <shape>". The caption names the shape and its colour; the background is drawn on a
// cool-to-warm axis that no caption mentions. That unnamed axis is what the demo's preference
// (warmer wins, scoring/demo_oracle.ts) acts on, so DPO can move it without fighting the prompt.
import type { RawImage } from '../data/pil_resize.js';
import { Rng } from '../data/rng.js';

export const DEMO_IMAGE_SIZE = 32;

export const SHAPE_COLOURS = {
  red: [220, 40, 40],
  yellow: [240, 210, 40],
  green: [40, 170, 60],
  blue: [40, 80, 230],
  white: [245, 245, 245],
  black: [25, 25, 25],
} as const satisfies Record<string, readonly [number, number, number]>;
export type ShapeColour = keyof typeof SHAPE_COLOURS;
export const COLOUR_NAMES = Object.keys(SHAPE_COLOURS) as ShapeColour[];

export const SHAPE_NAMES = ['circle', 'square', 'triangle'] as const;
export type ShapeName = (typeof SHAPE_NAMES)[number];

/** The background's two ends: warmth t = 0 is a cool slate blue, t = 1 a warm terracotta. */
const COOL = [85, 120, 175] as const;
const WARM = [195, 125, 75] as const;

export interface ShapeSpec {
  colour: ShapeColour;
  shape: ShapeName;
  /** Background position on the cool (0) to warm (1) axis. */
  warmth: number;
  /** Centre and radius in pixels. */
  cx: number;
  cy: number;
  r: number;
}

export const caption = (colour: ShapeColour, shape: ShapeName): string => `a ${colour} ${shape}`;

/** Every caption of the domain, colour-major. */
export function allCaptions(): { colour: ShapeColour; shape: ShapeName; caption: string }[] {
  return COLOUR_NAMES.flatMap((colour) => SHAPE_NAMES.map((shape) => ({ colour, shape, caption: caption(colour, shape) })));
}

/**
 * The prompts the demo holds out of its preference data (one per colour, every shape twice), so
 * that the evaluation asks for drawings DPO never saw a pair of.
 */
export function heldOutCaptions(): string[] {
  return COLOUR_NAMES.map((colour, i) => caption(colour, SHAPE_NAMES[i % SHAPE_NAMES.length]!));
}

/** A random drawing of `colour` `shape`: size, place and background drawn from `rng`. */
export function randomSpec(rng: Rng, colour: ShapeColour, shape: ShapeName): ShapeSpec {
  const r = 7 + rng.next() * 4;
  const lo = r + 2;
  const span = DEMO_IMAGE_SIZE - 2 * lo;
  return { colour, shape, warmth: rng.next(), cx: lo + rng.next() * span, cy: lo + rng.next() * span, r };
}

export function backgroundColour(warmth: number): [number, number, number] {
  return [0, 1, 2].map((c) => Math.round(COOL[c]! + (WARM[c]! - COOL[c]!) * warmth)) as [number, number, number];
}

/** Is (x, y) inside the shape? Squares and triangles are sized to look as large as the circle. */
function inside(s: ShapeSpec, x: number, y: number): boolean {
  const dx = x - s.cx;
  const dy = y - s.cy;
  switch (s.shape) {
    case 'circle': return dx * dx + dy * dy <= s.r * s.r;
    case 'square': return Math.abs(dx) <= 0.87 * s.r && Math.abs(dy) <= 0.87 * s.r;
    case 'triangle': {
      // upright equilateral triangle with circumradius 1.2 r: apex up, base below the centre
      const R = 1.2 * s.r;
      const top = s.cy - R;
      const bottom = s.cy + R / 2;
      if (y < top || y > bottom) return false;
      const halfWidth = ((y - top) / (bottom - top)) * R * Math.sqrt(3) / 2;
      return Math.abs(dx) <= halfWidth;
    }
  }
}

/** Renders a spec as RGB, anti-aliased by 4x4 supersampling. */
export function renderShape(s: ShapeSpec): RawImage {
  const size = DEMO_IMAGE_SIZE;
  const bg = backgroundColour(s.warmth);
  const fg = SHAPE_COLOURS[s.colour];
  const data = new Uint8Array(size * size * 3);
  const sub = 4;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let hits = 0;
      for (let j = 0; j < sub; j++) for (let i = 0; i < sub; i++) if (inside(s, x + (i + 0.5) / sub, y + (j + 0.5) / sub)) hits++;
      const a = hits / (sub * sub);
      for (let c = 0; c < 3; c++) data[(y * size + x) * 3 + c] = Math.round(bg[c]! * (1 - a) + fg[c]! * a);
    }
  }
  return { width: size, height: size, channels: 3, data };
}
