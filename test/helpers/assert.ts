import assert from 'node:assert/strict';
import * as torch from '../../src/torch/index.js';

/** Elementwise |a - b| <= atol + rtol |b|, with a message naming the worst element. */
export function assertClose(actual: torch.Tensor | number[], expected: torch.Tensor | number[], atol = 1e-6, rtol = 1e-5, what = 'tensor'): void {
  const a = Array.isArray(actual) ? actual : actual.toArray();
  const e = Array.isArray(expected) ? expected : expected.toArray();
  assert.equal(a.length, e.length, `${what}: ${a.length} values, expected ${e.length}`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < e.length; i++) {
    const excess = Math.abs(a[i]! - e[i]!) - (atol + rtol * Math.abs(e[i]!));
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) assert.fail(`${what}: element ${worst} is ${a[worst]}, expected ${e[worst]} (atol ${atol}, rtol ${rtol})`);
}

/** Runs fn and asserts that it leaves the live tensor count as it found it. */
export function noLeak<T>(fn: () => T, what = 'block'): T {
  const before = torch.memory().liveTensors;
  const r = fn();
  const after = torch.memory().liveTensors;
  assert.equal(after, before, `${what} leaked ${after - before} tensors`);
  return r;
}
