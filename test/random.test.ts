// Generators: seeding, per-generator streams, and state save/restore (what exact resume needs).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as torch from '../src/torch/index.js';

const { tidy } = torch;

test('getState/setState replays a generator exactly', () => tidy(() => {
  const g = new torch.Generator('cpu', 1234);
  torch.randn([5], { generator: g });
  const state = g.getState();
  assert.equal(state.dtype, 'uint8');
  const a = torch.randn([10], { generator: g }).toArray();
  g.setState(state);
  const b = torch.randn([10], { generator: g }).toArray();
  assert.deepEqual(b, a);
}));

test('the default generator state round-trips too (dropout, randnLike use it)', () => tidy(() => {
  torch.manualSeed(42);
  const gen = torch.defaultGenerator('cpu');
  assert.equal(gen.initialSeed(), 42);
  const state = gen.getState();
  const a = torch.F.dropout(torch.ones([64]), 0.5).toArray();
  const n1 = torch.randnLike(torch.zeros([4])).toArray();
  gen.setState(state);
  assert.deepEqual(torch.F.dropout(torch.ones([64]), 0.5).toArray(), a);
  assert.deepEqual(torch.randnLike(torch.zeros([4])).toArray(), n1);
}));

test('independent generators do not disturb each other', () => tidy(() => {
  const g1 = new torch.Generator('cpu', 5);
  const ref = torch.rand([4], { generator: new torch.Generator('cpu', 5) }).toArray();
  torch.manualSeed(0);
  torch.randn([100]);
  assert.deepEqual(torch.rand([4], { generator: g1 }).toArray(), ref);
  assert.throws(() => new torch.Generator('cpu', -1), /non-negative integer/);
}));
