// Deterministic memory: scopes free what they created, keep what they return, and a long
// training loop keeps the live-tensor count flat and RSS bounded.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';

const { tidy, nn, optim, F } = torch;
const live = () => torch.memory().liveTensors;

describe('scopes', () => {
  test('tidy disposes intermediates and keeps the returned value (nested in objects and arrays)', () => {
    const before = live();
    const out = tidy(() => {
      const a = torch.ones([3]);
      const b = a.mul(2);
      b.add(1); // garbage
      return { sum: b.sum(), parts: [a, 5], m: new Map([['b', b]]) };
    });
    assert.equal(live(), before + 3);
    assert.equal(out.sum.item(), 6);
    out.sum.dispose();
    out.parts[0] instanceof torch.Tensor && out.parts[0].dispose();
    out.m.get('b')!.dispose();
    assert.equal(live(), before);
  });

  test('nested tidy moves returned tensors to the parent scope', () => {
    const before = live();
    tidy(() => {
      const inner = tidy(() => torch.ones([2]).add(1));
      assert.equal(torch.memory().scopedTensors, 1);
      assert.ok(!inner.isDisposed);
    });
    assert.equal(live(), before);
  });

  test('keep and moveToOuterScope', () => {
    const before = live();
    let kept!: torch.Tensor;
    let moved!: torch.Tensor;
    tidy(() => {
      kept = torch.ones([2]).keep();
      tidy(() => {
        moved = torch.zeros([2]).moveToOuterScope();
      });
      assert.ok(!moved.isDisposed);
    });
    assert.ok(moved.isDisposed);
    assert.ok(!kept.isDisposed);
    kept.dispose();
    assert.equal(live(), before);
  });

  test('a throwing tidy still frees its tensors; async functions are refused', () => {
    const before = live();
    assert.throws(() => tidy(() => {
      torch.ones([4]);
      throw new Error('step failed');
    }), /step failed/);
    assert.equal(live(), before);
    assert.throws(() => tidy(async () => torch.ones([1])), /synchronous/);
    assert.equal(live(), before);
  });

  test('`using` scopes', () => {
    const before = live();
    let kept!: torch.Tensor;
    {
      using s = torch.scope();
      torch.ones([2]).mul(3);
      kept = s.keep(torch.ones([1]));
    }
    assert.equal(live(), before + 1);
    kept.dispose();
    assert.equal(live(), before);
  });

  test('without a scope a synchronous loop grows the live count (the rule scopes exist for)', () => {
    const before = live();
    const ts: torch.Tensor[] = [];
    for (let i = 0; i < 100; i++) ts.push(torch.ones([2]).add(i));
    assert.ok(live() >= before + 100);
    for (const t of ts) t.dispose();
    assert.ok(live() <= before + 100 && live() >= before);
  });

  test('the GC safety net frees an unscoped tensor that was dropped without dispose', async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) return; // run with --expose-gc (scripts/run-tests.js does)
    const settle = async () => {
      for (let i = 0; i < 5; i++) {
        gc();
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    await settle(); // earlier tests' unscoped garbage goes first
    const before = live();
    (() => { torch.ones([1000]); })();
    assert.equal(live(), before + 1);
    await settle();
    assert.equal(live(), before);
  });
});

describe('leak test', () => {
  test('5,000 forward/backward/AdamW steps of a small conv net keep live tensors flat and RSS bounded', () => {
    torch.manualSeed(0);
    const model = new nn.Sequential(
      new nn.Conv2d(3, 8, 3, { padding: 1 }), new nn.GroupNorm(2, 8), new nn.SiLU(),
      new nn.Conv2d(8, 3, 3, { padding: 1 }),
    );
    const opt = new optim.AdamW(model.parameters(), { lr: 1e-3 });
    const x = torch.randn([2, 3, 8, 8]).keep();
    const target = torch.zeros([2, 3, 8, 8]).keep();
    const step = () => tidy(() => {
      const loss = F.mseLoss(model.forward(x), target);
      loss.backward();
      optim.clipGradNorm_(model.parameters(), 1.0);
      opt.step();
      opt.zeroGrad();
      return loss.item();
    });
    const first = step();
    for (let i = 0; i < 200; i++) step(); // warm-up: allocator caches, optimizer state
    const liveAfterWarmup = live();
    const rssAfterWarmup = process.memoryUsage().rss;
    let last = first;
    for (let i = 0; i < 5000; i++) last = step();
    assert.equal(live(), liveAfterWarmup, 'live tensors grew over 5,000 steps');
    const growth = process.memoryUsage().rss - rssAfterWarmup;
    assert.ok(growth < 64 * 1024 * 1024, `RSS grew by ${(growth / 1048576).toFixed(1)} MiB over 5,000 steps`);
    assert.ok(last < first, `the loss went down (${first} -> ${last})`);
    opt.dispose();
    model.dispose();
    x.dispose();
    target.dispose();
  });
});
