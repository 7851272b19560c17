// The statistics of `diffusion-dpo eval`, as pure functions of plain numbers: mean, median, the
// win rate of a trained model over the base on paired images (same prompt, same seed), and a
// percentile-bootstrap confidence interval that resamples prompts, not images: the images of one
// prompt share its difficulty, so resampling them one by one would make the interval too narrow.
import { Rng } from '../data/rng.js';

function checkValues(xs: readonly number[], what: string): void {
  if (xs.length === 0) throw new RangeError(`${what} of no values`);
  for (const x of xs) if (!Number.isFinite(x)) throw new RangeError(`${what}: ${x} is not a finite number`);
}

export function mean(xs: readonly number[]): number {
  checkValues(xs, 'mean');
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/** The middle value; with an even count, the mean of the two middle values. */
export function median(xs: readonly number[]): number {
  checkValues(xs, 'median');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * The q-quantile of sorted values by linear interpolation between order statistics (Hyndman and
 * Fan's type 7: numpy's and R's default), so the interval can be checked with either.
 */
export function quantile(sorted: readonly number[], q: number): number {
  checkValues(sorted, 'quantile');
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile ${q} is not in [0, 1]`);
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

/** One paired comparison: 1 when the trained image scores higher, 0.5 on an exact tie, 0 when lower. */
export function outcome(trained: number, base: number): 0 | 0.5 | 1 {
  if (!Number.isFinite(trained) || !Number.isFinite(base)) throw new RangeError(`outcome of ${trained} against ${base}: scores must be finite`);
  return trained > base ? 1 : trained === base ? 0.5 : 0;
}

export interface WinCount {
  wins: number;
  ties: number;
  losses: number;
  /** (wins + ties / 2) / pairs */
  rate: number;
}

/** The win rate of `trained` over `base`, paired by position. */
export function winRate(trained: readonly number[], base: readonly number[]): WinCount {
  if (trained.length !== base.length) throw new RangeError(`win rate of ${trained.length} scores against ${base.length}: they must pair up`);
  if (trained.length === 0) throw new RangeError('win rate of no pairs');
  let wins = 0;
  let ties = 0;
  trained.forEach((t, i) => {
    const o = outcome(t, base[i]!);
    if (o === 1) wins++;
    else if (o === 0.5) ties++;
  });
  return { wins, ties, losses: trained.length - wins - ties, rate: (wins + ties / 2) / trained.length };
}

export interface BootstrapOptions {
  /** Resamples drawn (e.g. 2000). */
  resamples: number;
  /** Seed of the generator (mulberry32, src/data/rng.ts): the same seed gives the same interval. */
  seed: number;
  /** Coverage, e.g. 0.95 for the 2.5% and 97.5% percentiles. */
  level: number;
}

export interface Interval {
  low: number;
  high: number;
}

/**
 * Percentile bootstrap over groups (prompts): each resample draws as many groups as there are,
 * with replacement (group index = Rng.int(groups), drawn in order), and takes the mean of every
 * value of the drawn groups (the win rate over their pairs); the interval is the (1 - level)/2 and
 * (1 + level)/2 quantiles of the resampled means (type 7).
 */
export function bootstrapMeanOverGroups(groups: readonly (readonly number[])[], o: BootstrapOptions): Interval {
  if (groups.length === 0) throw new RangeError('bootstrap over no groups');
  if (!(Number.isInteger(o.resamples) && o.resamples >= 1)) throw new RangeError(`bootstrap resamples ${o.resamples}: a positive integer`);
  if (!(o.level > 0 && o.level < 1)) throw new RangeError(`bootstrap level ${o.level}: between 0 and 1`);
  const sums = groups.map((g) => {
    checkValues(g, 'bootstrap group');
    return g.reduce((a, b) => a + b, 0);
  });
  const rng = new Rng(o.seed);
  const means = new Array<number>(o.resamples);
  for (let r = 0; r < o.resamples; r++) {
    let sum = 0;
    let n = 0;
    for (let k = 0; k < groups.length; k++) {
      const g = rng.int(groups.length);
      sum += sums[g]!;
      n += groups[g]!.length;
    }
    means[r] = sum / n;
  }
  means.sort((a, b) => a - b);
  return { low: quantile(means, (1 - o.level) / 2), high: quantile(means, (1 + o.level) / 2) };
}

/** log C(n, k), from a table of log-factorials. */
function logChoose(logFact: Float64Array, n: number, k: number): number {
  return logFact[n]! - logFact[k]! - logFact[n - k]!;
}

/** P(X >= k) for X ~ Binomial(n, p). */
function upperTail(logFact: Float64Array, n: number, k: number, p: number): number {
  if (p <= 0) return k <= 0 ? 1 : 0;
  if (p >= 1) return 1;
  let s = 0;
  for (let i = k; i <= n; i++) s += Math.exp(logChoose(logFact, n, i) + i * Math.log(p) + (n - i) * Math.log1p(-p));
  return Math.min(1, s);
}

/**
 * The Clopper-Pearson ("exact") interval for a binomial proportion: k successes in n independent
 * trials, at the given coverage. It treats every trial as independent, so for images that share
 * prompts it is the interval of the pairs, not of the prompts (bootstrapMeanOverGroups is).
 */
export function clopperPearson(k: number, n: number, level = 0.95): { low: number; high: number } {
  if (!Number.isInteger(k) || !Number.isInteger(n) || n < 1 || k < 0 || k > n) throw new RangeError(`clopperPearson: need integers 0 <= k <= n, n >= 1 (got k ${k}, n ${n})`);
  if (!(level > 0 && level < 1)) throw new RangeError(`clopperPearson: level ${level} is not in (0, 1)`);
  const logFact = new Float64Array(n + 1);
  for (let i = 1; i <= n; i++) logFact[i] = logFact[i - 1]! + Math.log(i);
  const alpha = (1 - level) / 2;
  // bisection on p for `below(p)`: true while p is still under the bound sought
  const bisect = (below: (p: number) => boolean): number => {
    let [lo, hi] = [0, 1];
    for (let i = 0; i < 80; i++) {
      const mid = (lo + hi) / 2;
      if (below(mid)) lo = mid; else hi = mid;
    }
    return (lo + hi) / 2;
  };
  // low: P(X >= k | p) = alpha (it rises with p); high: P(X <= k | p) = alpha (it falls with p)
  const low = k === 0 ? 0 : bisect((p) => upperTail(logFact, n, k, p) < alpha);
  const high = k === n ? 1 : bisect((p) => 1 - upperTail(logFact, n, k + 1, p) > alpha);
  return { low, high };
}
