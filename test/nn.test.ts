// nn.Module bookkeeping (names, order, state dicts, dtype moves) and the layers' outputs against
// their definitions (PyTorch docs formulas, computed here with plain tensor ops).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { assertClose, noLeak } from './helpers/assert.js';
import { projectRoot } from './helpers/fixtures.js';

const { nn, F, tidy } = torch;

class Block extends nn.Module {
  readonly proj: torch.nn.Linear;
  readonly norm: torch.nn.GroupNorm;
  readonly layers: torch.nn.ModuleList<torch.nn.Conv2d>;
  constructor() {
    super();
    this.proj = this.registerModule('proj', new nn.Linear(4, 8));
    this.registerBuffer('scale', torch.ones([1]));
    this.registerBuffer('cache', torch.zeros([2]), false);
    this.norm = this.registerModule('norm', new nn.GroupNorm(2, 8));
    this.layers = this.registerModule('layers', new nn.ModuleList([new nn.Conv2d(8, 8, 3), new nn.Conv2d(8, 4, 1, { bias: false })]));
  }
}

describe('Module', () => {
  test('names and order follow registration, as PyTorch state dicts', () => noLeak(() => {
    const m = new Block();
    assert.deepEqual([...m.stateDict().keys()], [
      'scale', 'proj.weight', 'proj.bias', 'norm.weight', 'norm.bias', 'layers.0.weight', 'layers.0.bias', 'layers.1.weight',
    ].sort((a, b) => order(a) - order(b)));
    assert.deepEqual(m.namedParameters().map(([n]) => n), ['proj.weight', 'proj.bias', 'norm.weight', 'norm.bias', 'layers.0.weight', 'layers.0.bias', 'layers.1.weight']);
    assert.deepEqual(m.namedBuffers().map(([n]) => n), ['scale', 'cache']);
    assert.deepEqual([...m.namedModules()].map(([n]) => n), ['', 'proj', 'norm', 'layers', 'layers.0', 'layers.1']);
    assert.equal(m.numParameters(), 4 * 8 + 8 + 8 + 8 + 8 * 8 * 9 + 8 + 8 * 4);
    assert.ok(m.parameters().every((p) => p.requiresGrad));
    m.dispose();
  }));

  test('loadStateDict copies values and lists missing, unexpected and mis-shaped keys', () => noLeak(() => {
    const a = new nn.Linear(3, 2);
    const b = new nn.Linear(3, 2);
    tidy(() => {
      b.loadStateDict(a.stateDict());
      assertClose(b.weight, a.weight, 0, 0);
      const bad = new Map([['weight', torch.zeros([2, 4])], ['extra', torch.zeros([1])]]);
      assert.throws(() => b.loadStateDict(bad), (e: Error) => {
        assert.ok(e instanceof nn.StateDictError);
        assert.match(e.message, /missing keys: bias/);
        assert.match(e.message, /unexpected keys: extra/);
        assert.match(e.message, /size mismatch: weight \(checkpoint \[2, 4\], model \[2, 3\]\)/);
        return true;
      });
      const partial = b.loadStateDict(new Map([['bias', torch.tensor([7, 8])]]), { strict: false });
      assert.deepEqual(partial.missingKeys, ['weight']);
      assert.deepEqual(b.bias!.toArray(), [7, 8]);
      assert.ok(b.bias!.requiresGrad, 'loading keeps parameters trainable');
    });
    a.dispose();
    b.dispose();
  }));

  test('to(dtype) converts floating tensors in place, keeps integer buffers, drops stale grads', () => noLeak(() => {
    const m = new nn.Module();
    const w = m.registerParameter('w', torch.ones([2]));
    const ids = m.registerBuffer('ids', torch.arange(3))!;
    tidy(() => w.mul(2).sum().backward());
    m.to('float64');
    assert.equal(w.dtype, 'float64');
    assert.deepEqual(w.toArray(), [1, 1], 'values converted, not bytes reinterpreted');
    assert.equal(ids.dtype, 'int64');
    assert.equal(w.grad, null);
    assert.ok(w.requiresGrad && w.isLeaf);
    tidy(() => w.mul(3).sum().backward());
    tidy(() => assert.deepEqual(w.grad!.toArray(), [3, 3]));
    m.dispose();
  }));

  test('train/eval, requiresGrad_, zeroGrad', () => noLeak(() => {
    const m = new Block();
    m.eval();
    assert.ok([...m.namedModules()].every(([, x]) => !x.training));
    m.requiresGrad_(false);
    assert.equal(m.numParameters(true), 0);
    m.requiresGrad_(true);
    tidy(() => {
      m.proj.forward(torch.ones([1, 4])).sum().backward();
      assert.ok(m.proj.weight.grad !== null);
    });
    m.zeroGrad();
    assert.equal(m.proj.weight.grad, null);
    m.dispose();
  }));
});

describe('layers', () => {
  test('Linear = x W^T + b; Conv2d matches F.conv2d; default init bounds', () => noLeak(() => tidy(() => {
    const lin = new nn.Linear(3, 2);
    const x = torch.randn([4, 3]);
    assertClose(lin.forward(x), x.matmul(lin.weight.t()).add(lin.bias!), 1e-6);
    // kaiming_uniform(a=sqrt(5)) gives bound 1/sqrt(fan_in) for the weight, as for the bias
    assert.ok(lin.weight.abs().max().item() <= 1 / Math.sqrt(3) + 1e-7);
    const conv = new nn.Conv2d(2, 4, 3, { stride: 2, padding: 1 });
    const img = torch.randn([1, 2, 8, 8]);
    assert.deepEqual(conv.forward(img).shape, [1, 4, 4, 4]);
    assertClose(conv.forward(img), F.conv2d(img, conv.weight, conv.bias, { stride: 2, padding: 1 }), 0, 0);
    lin.dispose();
    conv.dispose();
  })));

  test('GroupNorm and LayerNorm normalise as their definitions', () => noLeak(() => tidy(() => {
    const x = torch.randn([2, 4, 3, 3]);
    const gn = new nn.GroupNorm(2, 4, 1e-5);
    const g = x.reshape(2, 2, -1);
    const manual = g.sub(g.mean(-1, true)).div(g.var(-1, { correction: 0, keepdim: true }).add(1e-5).sqrt()).reshape(2, 4, 3, 3);
    assertClose(gn.forward(x), manual, 1e-5);
    const ln = new nn.LayerNorm(3, 1e-5);
    const y = torch.randn([5, 3]);
    const lm = y.sub(y.mean(-1, true)).div(y.var(-1, { correction: 0, keepdim: true }).add(1e-5).sqrt());
    assertClose(ln.forward(y), lm, 1e-5);
    gn.dispose();
    ln.dispose();
  })));

  test('Embedding, Dropout (train vs eval), activations, Sequential', () => noLeak(() => tidy(() => {
    const emb = new nn.Embedding(10, 4);
    const idx = torch.tensor([[1, 3]], { dtype: 'int64' });
    assertClose(emb.forward(idx).select(1, 1), emb.weight.select(0, 3), 0, 0);
    const drop = new nn.Dropout(0.5);
    const ones = torch.ones([1000]);
    const kept = drop.forward(ones);
    const zeros = kept.eq(0).sum().item();
    assert.ok(zeros > 400 && zeros < 600, `dropout zeroed ${zeros} of 1000`);
    assert.ok(kept.max().item() === 2, 'survivors are scaled by 1/(1-p)');
    drop.eval();
    assertClose(drop.forward(ones), ones, 0, 0);
    const t = torch.tensor([-1, 0, 2]);
    assertClose(new nn.SiLU().forward(t), t.mul(t.sigmoid()));
    assertClose(new nn.QuickGELU().forward(t), t.mul(t.mul(1.702).sigmoid()));
    assertClose(new nn.GELU('tanh').forward(t), [-0.15880800939172324, 0, 1.9545976940871754], 1e-6); // PyTorch docs formula
    const seq = new nn.Sequential(new nn.Linear(2, 3), new nn.ReLU(), new nn.Linear(3, 1));
    assert.deepEqual(seq.forward(torch.ones([5, 2])).shape, [5, 1]);
    assert.deepEqual([...seq.stateDict().keys()], ['0.weight', '0.bias', '2.weight', '2.bias']);
    emb.dispose();
    seq.dispose();
  })));
});

function order(k: string): number {
  return ['scale', 'proj.weight', 'proj.bias', 'norm.weight', 'norm.bias', 'layers.0.weight', 'layers.0.bias', 'layers.1.weight'].indexOf(k);
}

test('a batch-1 convolution logs nothing (NNPACK is off: libtorch printed "Could not initialize NNPACK!" on every call on CPUs it does not support)', () => {
  const script = `import('./dist/src/torch/index.js').then((torch) => {
    const w = torch.randn([16, 16, 3, 3]);
    for (let i = 0; i < 3; i++) torch.F.conv2d(torch.randn([1, 16, 32, 32]), w, null, 1, 1);
    console.log('ok');
  });`;
  // (on CPUs NNPACK supports there was never a message: the test guards the machines where there was)
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', cwd: projectRoot });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'ok');
  assert.equal(r.stderr, '');
});
