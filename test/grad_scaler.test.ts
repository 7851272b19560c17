// GradScaler on CPU (the same kernels run on CUDA): unscaling, skipping non-finite steps, backoff
// and growth, state round trip. Expected values follow torch.amp.GradScaler's documented rules.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { assertClose, noLeak } from './helpers/assert.js';

test('scales the loss, unscales grads, skips a step with inf grads and backs off, grows after the interval', () => noLeak(() => {
  const p = torch.ones([2]).requiresGrad_().keep();
  const opt = new torch.optim.AdamW([p], { lr: 0.1, weightDecay: 0 });
  const scaler = new torch.GradScaler('cpu', { initScale: 8, growthInterval: 2 });
  torch.tidy(() => {
    const loss = p.mul(torch.tensor([1, 2])).sum();
    const scaled = scaler.scale(loss);
    assert.equal(scaled.item(), 3 * 8);
    scaled.backward();
    assert.deepEqual(p.grad!.toArray(), [8, 16]);
    scaler.unscale_(opt);
    assert.deepEqual(p.grad!.toArray(), [1, 2]);
    assert.throws(() => scaler.unscale_(opt), /already been called/);
    assert.ok(scaler.step(opt));
    scaler.update();
  });
  assert.equal(scaler.getScale(), 8, 'one clean step of an interval of 2: unchanged');
  const before = torch.tidy(() => p.clone().keep());
  torch.tidy(() => {
    p.grad = torch.tensor([Number.POSITIVE_INFINITY, 1]);
    assert.equal(scaler.step(opt), false, 'non-finite gradients skip the step');
    scaler.update();
  });
  assertClose(p, before, 0, 0, 'params untouched by the skipped step');
  assert.equal(scaler.getScale(), 4, 'backoff 0.5');
  for (let i = 0; i < 2; i++) {
    torch.tidy(() => {
      p.grad = torch.tensor([1, 1]);
      scaler.step(opt);
      scaler.update();
    });
  }
  assert.equal(scaler.getScale(), 8, 'growth 2 after 2 clean steps');
  const state = scaler.stateDict();
  assert.deepEqual(state, { scale: 8, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2, growthTracker: 0 });
  const other = new torch.GradScaler('cpu');
  other.loadStateDict(state);
  assert.equal(other.getScale(), 8);
  other.dispose();
  scaler.dispose();
  opt.dispose();
  before.dispose();
  p.grad = null;
  p.dispose();
}));

test('disabled scaler is a pass-through', () => noLeak(() => torch.tidy(() => {
  const s = new torch.GradScaler('cpu', { enabled: false });
  const l = torch.tensor(2);
  assert.equal(s.scale(l), l);
  assert.equal(s.getScale(), 1);
  s.dispose();
})));
