// Pillow's antialiased resampling (libImaging/Resample.c, Pillow 9.x) for 8-bit images, ported
// operation for operation so that results are bit-identical to PIL's Image.resize, which is what
// torchvision's Resize does on PIL images in the reference's transforms. Filters are evaluated in
// double precision, normalised, turned into 22-bit fixed point, and applied horizontally (to the
// rows the vertical pass needs) then vertically, rounding to uint8 in between, as PIL does.

export type PilFilter = 'bilinear' | 'bicubic' | 'lanczos' | 'box';

const PRECISION_BITS = 32 - 8 - 2;

const FILTERS: Record<PilFilter, { support: number; fn: (x: number) => number }> = {
  box: { support: 0.5, fn: (x) => (x > -0.5 && x <= 0.5 ? 1.0 : 0.0) },
  bilinear: { support: 1.0, fn: (x) => { const a = Math.abs(x); return a < 1.0 ? 1.0 - a : 0.0; } },
  bicubic: {
    support: 2.0,
    fn: (x) => {
      const a = -0.5;
      const v = Math.abs(x);
      if (v < 1.0) return ((a + 2.0) * v - (a + 3.0)) * v * v + 1;
      if (v < 2.0) return (((v - 5) * v + 8) * v - 4) * a;
      return 0.0;
    },
  },
  lanczos: {
    support: 3.0,
    fn: (x) => {
      const sinc = (t: number) => (t === 0 ? 1.0 : Math.sin(Math.PI * t) / (Math.PI * t));
      return x > -3.0 && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0;
    },
  },
};

interface Coeffs {
  ksize: number;
  bounds: Int32Array; // [xmin, count] per output pixel
  kk: Int32Array; // fixed-point weights, ksize per output pixel
}

/** precompute_coeffs + normalize_coeffs_8bpc. */
function coefficients(inSize: number, in0: number, in1: number, outSize: number, filter: PilFilter): Coeffs {
  const f = FILTERS[filter];
  const scale = (in1 - in0) / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = f.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0.0;
    k.fill(0);
    for (let x = 0; x < xmax; x++) {
      const w = f.fn((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0.0 ? k[x]! / ww : k[x]!;
      // C's (int) cast truncates toward zero
      kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(v: number): number {
  const s = v >> PRECISION_BITS;
  return s < 0 ? 0 : s > 255 ? 255 : s;
}

export interface RawImage {
  width: number;
  height: number;
  channels: number;
  /** Row-major HWC uint8. */
  data: Uint8Array;
}

/**
 * PIL Image.resize((outW, outH), filter) on an 8-bit image with any channel count.
 * JS numbers are exact here: sums stay below 2^53 (weights < 2^22 times 255 times ksize).
 */
export function pilResize(img: RawImage, outW: number, outH: number, filter: PilFilter = 'bilinear'): RawImage {
  const { width: inW, height: inH, channels: c } = img;
  if (outW === inW && outH === inH) return { width: inW, height: inH, channels: c, data: img.data.slice() };
  const needH = outW !== inW;
  const needV = outH !== inH;
  const horiz = coefficients(inW, 0, inW, outW, filter);
  const vert = coefficients(inH, 0, inH, outH, filter);
  // rows of the source the vertical pass reads
  const yFirst = vert.bounds[0]!;
  const yLast = vert.bounds[outH * 2 - 2]! + vert.bounds[outH * 2 - 1]!;
  let src = img.data;
  let srcW = inW;
  let srcH = inH;
  let vertOffset = 0;
  if (needH) {
    const rows = yLast - yFirst;
    const tmp = new Uint8Array(outW * rows * c);
    const half = 1 << (PRECISION_BITS - 1);
    for (let yy = 0; yy < rows; yy++) {
      const rowIn = (yy + yFirst) * inW * c;
      const rowOut = yy * outW * c;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = horiz.bounds[xx * 2]!;
        const xmax = horiz.bounds[xx * 2 + 1]!;
        const kOff = xx * horiz.ksize;
        for (let ch = 0; ch < c; ch++) {
          let ss = half;
          for (let x = 0; x < xmax; x++) ss += src[rowIn + (x + xmin) * c + ch]! * horiz.kk[kOff + x]!;
          tmp[rowOut + xx * c + ch] = clip8(ss);
        }
      }
    }
    src = tmp;
    srcW = outW;
    srcH = rows;
    vertOffset = yFirst;
  }
  if (!needV) return { width: srcW, height: srcH, channels: c, data: src };
  const out = new Uint8Array(srcW * outH * c);
  const half = 1 << (PRECISION_BITS - 1);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = vert.bounds[yy * 2]! - vertOffset;
    const ymax = vert.bounds[yy * 2 + 1]!;
    const kOff = yy * vert.ksize;
    for (let xx = 0; xx < srcW; xx++) {
      for (let ch = 0; ch < c; ch++) {
        let ss = half;
        for (let y = 0; y < ymax; y++) ss += src[((y + ymin) * srcW + xx) * c + ch]! * vert.kk[kOff + y]!;
        out[(yy * srcW + xx) * c + ch] = clip8(ss);
      }
    }
  }
  return { width: srcW, height: outH, channels: c, data: out };
}
