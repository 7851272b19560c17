// Deterministic randomness for the data pipeline: a counter-based generator keyed by
// (seed, stream, index), so that a sample's crop, flip and caption dropout depend only on the
// seed, the epoch and the sample's position, never on worker scheduling. That is what makes a
// resumed run see exactly the batches an uninterrupted run would have seen.

/** SplitMix64 finaliser on two 32-bit halves (a well-mixed 32-bit hash of its inputs). */
export function hash32(...parts: number[]): number {
  let h = 0x9e3779b9 ^ parts.length;
  for (const p of parts) {
    let x = (p >>> 0) ^ Math.floor(p / 4294967296);
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
    x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
    x ^= x >>> 16;
    h = Math.imul(h ^ x, 0x27d4eb2d) + 0x165667b1;
    h ^= h >>> 15;
  }
  return h >>> 0;
}

/** mulberry32: a small, fast generator with 2^32 period; uniform floats in [0, 1). */
export class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/** A Fisher-Yates permutation of `items` (a copy), seeded. */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = items.slice();
  const rng = new Rng(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
