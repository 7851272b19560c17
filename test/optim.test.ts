// Optimizers and schedules: the fixture cases (torch 1.13 AdamW, transformers 4.30 Adafactor,
// diffusers 0.20 schedules), fused vs foreach AdamW, exact state round trips, and clipping.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { assertClose, noLeak } from './helpers/assert.js';

const { optim, tidy } = torch;

function params(seed: number): torch.Tensor[] {
  const g = new torch.Generator('cpu', seed);
  return [[8, 4], [4], [2, 3, 3, 3]].map((s) => torch.randn(s, { generator: g }).requiresGrad_().keep());
}
function setGrads(ps: torch.Tensor[], seed: number): void {
  const g = new torch.Generator('cpu', seed);
  // The parameter holds its own reference to the gradient; our handle dies with the scope.
  tidy(() => {
    for (const p of ps) p.grad = torch.randn(p.shape, { generator: g });
  });
}
function disposeAll(ps: torch.Tensor[]): void {
  for (const p of ps) {
    p.grad = null;
    p.dispose();
  }
}

describe('AdamW', () => {
  test('fused kernel and foreach path agree', () => noLeak(() => {
    const a = params(0);
    const b = params(0);
    const oa = new optim.AdamW(a, { lr: 1e-2, weightDecay: 0.1 });
    const ob = new optim.AdamW(b, { lr: 1e-2, weightDecay: 0.1, fused: true });
    for (let k = 0; k < 5; k++) {
      setGrads(a, 100 + k);
      setGrads(b, 100 + k);
      oa.step();
      ob.step();
    }
    a.forEach((p, i) => assertClose(p, b[i]!, 1e-6, 1e-5, `param ${i}`));
    oa.dispose();
    ob.dispose();
    disposeAll(a);
    disposeAll(b);
  }));

  test('state saved by a foreach run continues on the fused kernel, and the other way round', () => noLeak(() => {
    for (const [savedFused, loadedFused] of [[false, true], [true, false]] as const) {
      const ref = params(3);
      const opt = new optim.AdamW(ref, { lr: 5e-3, fused: loadedFused });
      const moved = params(3);
      const first = new optim.AdamW(moved, { lr: 5e-3, fused: savedFused });
      for (let k = 0; k < 2; k++) {
        setGrads(ref, k);
        setGrads(moved, k);
        opt.step();
        first.step();
      }
      const saved = first.stateDict();
      const second = new optim.AdamW(moved, { lr: 5e-3, fused: loadedFused });
      second.loadStateDict(saved);
      first.dispose();
      assert.equal(second.paramGroups[0]!.hyper.fused, loadedFused, 'the kernel is the loading optimizer\'s choice');
      for (let k = 2; k < 4; k++) {
        setGrads(ref, k);
        setGrads(moved, k);
        opt.step();
        second.step();
      }
      // the two kernels round differently in the last bits; the step count and moments carried over
      ref.forEach((p, i) => assertClose(moved[i]!, p, 1e-6, 1e-5, `param ${i} (${savedFused ? 'fused' : 'foreach'} -> ${loadedFused ? 'fused' : 'foreach'})`));
      opt.dispose();
      second.dispose();
      disposeAll(ref);
      disposeAll(moved);
    }
  }));

  test('state dict round trip continues exactly as an uninterrupted run', () => noLeak(() => {
    const ref = params(1);
    const opt = new optim.AdamW(ref, { lr: 5e-3 });
    const resumed = params(1);
    const opt2 = new optim.AdamW(resumed, { lr: 5e-3 });
    for (let k = 0; k < 3; k++) {
      setGrads(ref, k);
      setGrads(resumed, k);
      opt.step();
      opt2.step();
    }
    const saved = opt2.stateDict();
    const copy = { tensors: new Map([...saved.tensors].map(([k, v]) => [k, v.clone().keep()])), meta: JSON.parse(JSON.stringify(saved.meta)) };
    opt2.dispose();
    const opt3 = new optim.AdamW(resumed, { lr: 1 }); // hyper-parameters come back from the state
    opt3.loadStateDict(copy);
    for (const t of copy.tensors.values()) t.dispose();
    for (let k = 3; k < 6; k++) {
      setGrads(ref, k);
      setGrads(resumed, k);
      opt.step();
      opt3.step();
    }
    ref.forEach((p, i) => assertClose(p, resumed[i]!, 0, 0, `param ${i} bit-identical`));
    assert.equal(opt3.paramGroups[0]!.hyper.lr, 5e-3);
    opt.dispose();
    opt3.dispose();
    disposeAll(ref);
    disposeAll(resumed);
  }));

  test('invalid hyper-parameters and unsupported options fail loudly', () => {
    assert.throws(() => new optim.AdamW([], { lr: -1 }), /Invalid learning rate/);
    assert.throws(() => new optim.AdamW([], { betas: [1, 0.9] }), /Invalid beta parameter at index 0/);
    assert.throws(() => new optim.AdamW([], { amsgrad: true }), /amsgrad is not supported/);
  });
});

describe('Adafactor', () => {
  test('transformers option checks', () => {
    assert.throws(() => new optim.Adafactor([], { lr: 1e-3 }), /Cannot combine manual `lr` and `relative_step=True`/);
    assert.throws(() => new optim.Adafactor([], { lr: 1e-3, relativeStep: false, warmupInit: true }), /`warmup_init=True` requires `relative_step=True`/);
  });

  test('relative step, parameter scaling and beta1 run and keep state shapes factored', () => noLeak(() => {
    const ps = params(2);
    const opt = new optim.Adafactor(ps, { beta1: 0.9, warmupInit: true });
    setGrads(ps, 3);
    const before = tidy(() => ps[0]!.clone().keep());
    opt.step();
    const sd = opt.stateDict();
    assert.deepEqual(sd.tensors.get('0.exp_avg_sq_row')!.shape, [8]);
    assert.deepEqual(sd.tensors.get('0.exp_avg_sq_col')!.shape, [4]);
    assert.deepEqual(sd.tensors.get('1.exp_avg_sq')!.shape, [4]);
    assert.deepEqual(sd.tensors.get('2.exp_avg_sq_row')!.shape, [2, 3, 3]);
    assert.equal(sd.meta.scalars['0']!.step, 1);
    // warmup_init: rho_1 = min(1e-6 * 1, 1/sqrt(1)) = 1e-6, scaled by max(1e-3, RMS(theta)) -> a tiny step
    const moved = tidy(() => ps[0]!.sub(before).abs().max().item());
    assert.ok(moved > 0 && moved < 1e-5, `moved ${moved}`);
    before.dispose();
    opt.dispose();
    disposeAll(ps);
  }));
});

describe('clipGradNorm_', () => {
  test('returns the total norm and scales by max_norm / (norm + 1e-6) when above', () => noLeak(() => tidy(() => {
    const a = torch.zeros([2]).requiresGrad_();
    const b = torch.zeros([1]).requiresGrad_();
    a.grad = torch.tensor([3, 0]);
    b.grad = torch.tensor([4]);
    const norm = optim.clipGradNorm_([a, b], 1.0);
    assertClose(norm, [5]);
    assertClose(a.grad!, [3 / (5 + 1e-6), 0]);
    assertClose(b.grad!, [4 / (5 + 1e-6)]);
    a.grad = torch.tensor([0.3, 0]);
    b.grad = torch.tensor([0.4]);
    optim.clipGradNorm_([a, b], 1.0);
    assertClose(a.grad!, [Math.fround(0.3), 0], 0, 0); // below max_norm: unchanged (factor clamped to 1)
    a.grad = torch.tensor([Number.NaN, 0]);
    assert.throws(() => optim.clipGradNorm_([a, b], 1.0, { errorIfNonfinite: true }), /non-finite/);
    a.grad = null;
    b.grad = null;
  })));

  test('an infinite max norm measures without touching the gradients: an overflowed one does not make the others NaN', () => noLeak(() => tidy(() => {
    const a = torch.zeros([2]).requiresGrad_();
    const b = torch.zeros([1]).requiresGrad_();
    a.grad = torch.tensor([Number.POSITIVE_INFINITY, 1]);
    b.grad = torch.tensor([2]);
    assert.equal(optim.clipGradNorm_([a, b], Number.POSITIVE_INFINITY).item(), Number.POSITIVE_INFINITY);
    assert.deepEqual([...a.grad.toArray(), ...b.grad.toArray()], [Number.POSITIVE_INFINITY, 1, 2]);
    a.grad = null;
    b.grad = null;
  })));
});

describe('LR schedules', () => {
  test('state round trip and clear errors', () => noLeak(() => {
    const p = torch.zeros([1]).requiresGrad_().keep();
    const opt = new optim.AdamW([p], { lr: 1 });
    const s = optim.getScheduler('cosine', opt, { numWarmupSteps: 2, numTrainingSteps: 10 });
    for (let i = 0; i < 4; i++) s.step();
    const lr = s.getLastLr()[0]!;
    const s2 = optim.getScheduler('cosine', opt, { numWarmupSteps: 2, numTrainingSteps: 10 });
    s2.loadStateDict(s.stateDict());
    assert.equal(s2.getLastLr()[0], lr);
    assert.throws(() => optim.getScheduler('linear', opt, { numWarmupSteps: 2 }), /requires `num_training_steps`/);
    assert.throws(() => optim.getScheduler('bogus' as torch.optim.ScheduleName, opt), /unknown lr scheduler 'bogus'/);
    opt.dispose();
    p.dispose();
  }));
});
