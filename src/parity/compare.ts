// Error measures of one output against its expected value, allclose-style:
// pass when |actual - expected| <= atol + rtol * |expected| everywhere.
import * as torch from '../torch/index.js';
import type { Tolerance } from './case.js';

export interface Comparison {
  name: string;
  maxAbs: number;
  /** max |actual - expected| / max |expected| (0 when expected is all zeros and so is the error). */
  maxRel: number;
  /** max |actual - expected| / (atol + rtol |expected|): <= 1 passes. */
  usage: number;
  tolerance: Tolerance;
  ok: boolean;
  detail?: string;
  /**
   * Reported but not judged: a quantity the fixture cannot pin down for an independent
   * implementation (see the runner that sets it).
   */
  informational?: boolean;
}

export function compareTensors(name: string, actual: torch.Tensor, expected: torch.Tensor, tolerance: Tolerance): Comparison {
  const a = actual.shape;
  const e = expected.shape;
  const numelA = a.reduce((x, y) => x * y, 1);
  const numelE = e.reduce((x, y) => x * y, 1);
  if (numelA !== numelE || (a.length === e.length && a.some((d, i) => d !== e[i]))) {
    return { name, maxAbs: Infinity, maxRel: Infinity, usage: Infinity, tolerance, ok: false, detail: `shape [${a}] vs expected [${e}]` };
  }
  return torch.tidy(() => {
    const act = actual.to({ dtype: 'float64', device: 'cpu' }).reshape(e.length ? e : [1]);
    const exp = expected.to({ dtype: 'float64', device: 'cpu' }).reshape(e.length ? e : [1]);
    const diff = act.sub(exp).abs();
    const nonFinite = act.isfinite().logicalNot().any().item() !== 0;
    const maxAbs = numelE ? diff.max().item() : 0;
    const scale = numelE ? exp.abs().max().item() : 0;
    const bound = exp.abs().mul(tolerance.rtol).add(tolerance.atol);
    // 0/0 (an exact match under a zero tolerance) counts as 0; any error over a zero bound as inf
    const usage = numelE ? diff.div(bound).nanToNum(0, Infinity).max().item() : 0;
    const ok = !nonFinite && usage <= 1;
    return {
      name, maxAbs, maxRel: scale > 0 ? maxAbs / scale : maxAbs, usage, tolerance, ok,
      ...(nonFinite ? { detail: 'non-finite values' } : {}),
    };
  });
}

/** Scalars (python float math): the same measures on plain numbers. */
export function compareNumbers(name: string, actual: number[], expected: number[], tolerance: Tolerance): Comparison {
  if (actual.length !== expected.length) {
    return { name, maxAbs: Infinity, maxRel: Infinity, usage: Infinity, tolerance, ok: false, detail: `${actual.length} values vs expected ${expected.length}` };
  }
  let maxAbs = 0;
  let scale = 0;
  let usage = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    maxAbs = Math.max(maxAbs, d);
    scale = Math.max(scale, Math.abs(expected[i]!));
    usage = Math.max(usage, d / (tolerance.atol + tolerance.rtol * Math.abs(expected[i]!)));
  }
  return { name, maxAbs, maxRel: scale > 0 ? maxAbs / scale : maxAbs, usage, tolerance, ok: usage <= 1 && actual.every(Number.isFinite) };
}
