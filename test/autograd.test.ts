// Autograd through the boxed dispatcher, the grad/inference/autocast modes, and finite-difference
// gradient checks (float64) of the functional ops the models are built from.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { assertClose, noLeak } from './helpers/assert.js';

const { tidy, F } = torch;

/**
 * Central differences of sum(f(x) * w) for each element of x, against the autograd gradient
 * (torch.autograd.gradcheck does the same in float64).
 */
function gradcheck(f: (x: torch.Tensor) => torch.Tensor, x0: torch.Tensor, eps = 1e-6, atol = 1e-5): void {
  tidy(() => {
    const x = x0.double().detach().requiresGrad_(true);
    const w = torch.randn(f(x).shape, { dtype: 'float64', generator: new torch.Generator('cpu', 7) });
    const loss = f(x).mul(w).sum();
    loss.backward();
    const analytic = x.grad!.toArray();
    const base = x.detach().toArray();
    const numeric = base.map((_, i) => tidy(() => {
      const bump = (delta: number) => torch.noGrad(() => {
        const v = base.slice();
        v[i] = v[i]! + delta;
        const xi = torch.tensor(v, { dtype: 'float64' }).reshape(x.shape);
        return f(xi).mul(w).sum().item();
      });
      return (bump(eps) - bump(-eps)) / (2 * eps);
    }));
    assertClose(analytic, numeric, atol, 1e-4, 'gradient');
  });
}

describe('autograd', () => {
  test('backward gives d/dx sum(x^2 * 3) = 6x and accumulates', () => noLeak(() => {
    const x = torch.tensor([1, -2, 0.5]).requiresGrad_();
    tidy(() => x.pow(2).mul(3).sum().backward());
    tidy(() => assert.deepEqual(x.grad!.toArray(), [6, -12, 3]));
    tidy(() => x.pow(2).mul(3).sum().backward());
    tidy(() => assert.deepEqual(x.grad!.toArray(), [12, -24, 6]));
    x.grad = null;
    assert.equal(x.grad, null);
    assert.ok(x.isLeaf);
    tidy(() => assert.match(x.mul(2).gradFn ?? '', /^MulBackward/));
    x.dispose();
  }));

  test('backward with an explicit gradient, retainGraph, autograd.grad', () => noLeak(() => tidy(() => {
    const x = torch.tensor([1, 2]).requiresGrad_();
    const y = x.mul(x);
    y.backward(torch.tensor([1, 0.5]), { retainGraph: true });
    assert.deepEqual(x.grad!.toArray(), [2, 2]);
    const [g] = torch.grad([y.sum()], [x]);
    assert.deepEqual(g!.toArray(), [2, 4]);
    assert.throws(() => torch.zeros([2]).sum().backward(), /does not require grad/);
  })));

  test('noGrad, enableGrad and inferenceMode restore the previous mode, even on throw', () => noLeak(() => tidy(() => {
    const x = torch.ones([2]).requiresGrad_();
    assert.ok(torch.isGradEnabled());
    const y = torch.noGrad(() => {
      assert.ok(!torch.isGradEnabled());
      const inner = torch.enableGrad(() => x.mul(2));
      assert.ok(inner.requiresGrad);
      return x.mul(2);
    });
    assert.ok(!y.requiresGrad);
    assert.throws(() => torch.noGrad(() => { throw new Error('boom'); }), /boom/);
    assert.ok(torch.isGradEnabled());
    torch.inferenceMode(() => {
      assert.ok(torch.isInferenceMode());
      assert.ok(!x.mul(2).requiresGrad);
    });
    assert.ok(!torch.isInferenceMode());
    assert.throws(() => torch.noGrad(async () => 1), /synchronous/);
    assert.ok(torch.isGradEnabled());
    { using _g = torch.noGradGuard(); assert.ok(!torch.isGradEnabled()); }
    assert.ok(torch.isGradEnabled());
  })));

  test('autocast on CPU runs linear in bfloat16 and restores float32 outside', () => noLeak(() => tidy(() => {
    const w = torch.randn([4, 3]);
    const x = torch.randn([2, 3]);
    const inside = torch.autocast({ device: 'cpu', dtype: 'bfloat16' }, () => {
      assert.ok(torch.isAutocastEnabled('cpu'));
      return F.linear(x, w);
    });
    assert.equal(inside.dtype, 'bfloat16');
    assert.ok(!torch.isAutocastEnabled('cpu'));
    assert.equal(F.linear(x, w).dtype, 'float32');
    assertClose(inside.float(), F.linear(x, w), 0.05, 0.02); // bf16 keeps ~3 significant digits
    // nested regions and disabling
    torch.autocast({ device: 'cpu' }, () => {
      const off = torch.autocast({ device: 'cpu', enabled: false }, () => F.linear(x, w));
      assert.equal(off.dtype, 'float32');
      assert.equal(F.linear(x, w).dtype, 'bfloat16');
    });
    assert.throws(() => torch.autocast({ device: 'cpu', dtype: 'float64' }, () => 0), /supports/);
  })));
});

describe('gradient checks (float64 finite differences)', () => {
  const g = new torch.Generator('cpu', 0);
  test('linear', () => noLeak(() => tidy(() => {
    const w = torch.randn([3, 4], { dtype: 'float64', generator: g });
    const b = torch.randn([3], { dtype: 'float64', generator: g });
    gradcheck((x) => F.linear(x, w, b), torch.randn([2, 4], { generator: g }));
  })));
  test('conv2d with stride, padding, groups', () => noLeak(() => tidy(() => {
    const w = torch.randn([4, 1, 3, 3], { dtype: 'float64', generator: g });
    gradcheck((x) => F.conv2d(x, w, null, { stride: 2, padding: 1, groups: 2 }), torch.randn([1, 2, 5, 5], { generator: g }));
  })));
  test('groupNorm and layerNorm', () => noLeak(() => tidy(() => {
    const gw = torch.randn([4], { dtype: 'float64', generator: g });
    gradcheck((x) => F.groupNorm(x, 2, gw, null, 1e-5), torch.randn([2, 4, 3, 3], { generator: g }));
    gradcheck((x) => F.layerNorm(x, [5], null, null), torch.randn([3, 5], { generator: g }));
  })));
  test('scaledDotProductAttention equals softmax(q k^T / sqrt(d)) v and has the right gradient', () => noLeak(() => tidy(() => {
    const q = torch.randn([1, 2, 4, 8], { dtype: 'float64', generator: g });
    const k = torch.randn([1, 2, 6, 8], { dtype: 'float64', generator: g });
    const v = torch.randn([1, 2, 6, 8], { dtype: 'float64', generator: g });
    const manual = F.softmax(q.matmul(k.transpose(-1, -2)).mul(1 / Math.sqrt(8)), -1).matmul(v);
    assertClose(F.scaledDotProductAttention(q, k, v), manual, 1e-10, 1e-10);
    gradcheck((x) => F.scaledDotProductAttention(x, k, v), q.float());
  })));
  test('silu, gelu (exact and tanh), quickGelu, interpolate, logSigmoid, mseLoss', () => noLeak(() => tidy(() => {
    const x = torch.randn([2, 3, 4, 4], { generator: g });
    gradcheck((t) => F.silu(t), x);
    gradcheck((t) => F.gelu(t), x);
    gradcheck((t) => F.gelu(t, 'tanh'), x);
    gradcheck((t) => F.quickGelu(t), x);
    gradcheck((t) => F.interpolate(t, { scaleFactor: 2, mode: 'nearest' }), x);
    gradcheck((t) => F.interpolate(t, { size: [3, 5], mode: 'bilinear' }), x);
    gradcheck((t) => F.logSigmoid(t), x);
    const target = torch.randn([2, 3, 4, 4], { dtype: 'float64', generator: g });
    gradcheck((t) => F.mseLoss(t, target), x);
  })));
});
