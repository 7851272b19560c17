// Tensor API: creation, dtypes, views, math, reductions, host access, and errors. Expected values
// are worked by hand or are PyTorch's documented semantics (cited where not obvious).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { assertClose, noLeak } from './helpers/assert.js';

const { tidy } = torch;

describe('creation', () => {
  test('zeros/ones/full/arange/linspace/eye', () => noLeak(() => tidy(() => {
    assert.deepEqual(torch.zeros([2, 3]).toArray(), [0, 0, 0, 0, 0, 0]);
    assert.deepEqual(torch.ones([2], { dtype: 'int32' }).toArray(), [1, 1]);
    assert.deepEqual(torch.full([2, 2], 7.5).toArray(), [7.5, 7.5, 7.5, 7.5]);
    const a = torch.arange(5);
    assert.equal(a.dtype, 'int64'); // integral bounds give int64, as torch.arange
    assert.deepEqual(a.toArray(), [0, 1, 2, 3, 4]);
    assert.equal(torch.arange(0, 1, 0.25).dtype, 'float32');
    assert.deepEqual(torch.arange(0, 1, 0.25).toArray(), [0, 0.25, 0.5, 0.75]);
    assert.deepEqual(torch.linspace(0, 1, 5).toArray(), [0, 0.25, 0.5, 0.75, 1]);
    assert.deepEqual(torch.eye(2).toArray(), [1, 0, 0, 1]);
  })));

  test('tensor() gives float32 for numbers unless told, bool for booleans, and keeps nested shape', () => noLeak(() => tidy(() => {
    const i = torch.tensor([[1, 2, 3], [4, 5, 6]], { dtype: 'int64' });
    assert.equal(i.dtype, 'int64');
    assert.deepEqual(i.shape, [2, 3]);
    assert.equal(torch.tensor([1, 2]).dtype, 'float32');
    assert.throws(() => torch.tensor([1.5], { dtype: 'int64' }), /safe integers/);
    assert.equal(torch.tensor([true, false]).dtype, 'bool');
    assert.equal(torch.tensor(3.25).item(), 3.25);
    assert.deepEqual(torch.tensor(3.25).shape, []);
    assert.throws(() => torch.tensor([[1, 2], [3]] as number[][]), /ragged/);
  })));

  test('typed arrays and raw bytes in every dtype', () => noLeak(() => tidy(() => {
    const f = torch.fromTypedArray(new Float32Array([1, 2, 3, 4]), [2, 2]);
    assert.equal(f.dtype, 'float32');
    assert.deepEqual([...f.toTypedArray()], [1, 2, 3, 4]);
    const l = torch.fromTypedArray(new BigInt64Array([1n, -2n]), [2]);
    assert.equal(l.dtype, 'int64');
    assert.deepEqual([...(l.toTypedArray() as BigInt64Array)], [1n, -2n]);
    // float16 bits: 0x3c00 = 1.0, 0xc000 = -2.0 (IEEE 754 binary16)
    const h = torch.fromTypedArray(new Uint16Array([0x3c00, 0xc000]), [2], { dtype: 'float16' });
    assert.equal(h.dtype, 'float16');
    assert.deepEqual(h.toArray(), [1, -2]);
    assert.deepEqual([...(h.toTypedArray() as Uint16Array)], [0x3c00, 0xc000]);
    // bfloat16 bits: 0x3f80 = 1.0, 0x4040 = 3.0
    const b = torch.fromTypedArray(new Uint16Array([0x3f80, 0x4040]), [2], { dtype: 'bfloat16' });
    assert.deepEqual(b.toArray(), [1, 3]);
    const bytes = Buffer.alloc(8);
    bytes.writeFloatLE(0.5, 0);
    bytes.writeFloatLE(-1, 4);
    assert.deepEqual(torch.fromBytes(bytes, 'float32', [2]).toArray(), [0.5, -1]);
    for (const d of torch.DTYPES) {
      const t = torch.ones([3], { dtype: d });
      assert.equal(t.dtype, d);
      assert.deepEqual(t.toArray(), [1, 1, 1], d);
    }
  })));

  test('random factories with a generator reproduce PyTorch', () => noLeak(() => tidy(() => {
    // torch.manual_seed(0); torch.randn(3) in PyTorch 2.x CPU
    torch.manualSeed(0);
    assertClose(torch.randn([3]), [1.5409960746765137, -0.293428897857666, -2.1787893772125244], 0, 0);
    // torch.randn(2, generator=torch.Generator().manual_seed(0)) is the same stream
    const g = new torch.Generator('cpu', 0);
    assertClose(torch.randn([2], { generator: g }), [1.5409960746765137, -0.293428897857666], 0, 0);
    const r = torch.randint(0, 10, [100], { generator: new torch.Generator('cpu', 1) });
    assert.equal(r.dtype, 'int64');
    assert.ok(r.toArray().every((v) => v >= 0 && v < 10 && Number.isInteger(v)));
    const u = torch.rand([1000], { generator: g });
    assert.ok(u.min().item() >= 0 && u.max().item() < 1);
  })));
});

describe('conversion', () => {
  test('to(dtype/device), casts, clone, detach, channels-last', () => noLeak(() => tidy(() => {
    const x = torch.tensor([1.7, -2.2]);
    assert.deepEqual(x.to('int64').toArray(), [1, -2]); // truncation, as PyTorch casts
    assert.equal(x.half().dtype, 'float16');
    assert.equal(x.to({ dtype: 'float64', device: 'cpu' }).dtype, 'float64');
    const c = x.clone();
    c.add_(1);
    assertClose(x, [1.7, -2.2]);
    const img = torch.randn([2, 3, 4, 5]);
    const cl = img.contiguous('channelsLast');
    assert.ok(cl.isContiguous('channelsLast'));
    assert.ok(!cl.isContiguous());
    assert.deepEqual(cl.stride(), [60, 1, 15, 3]);
    assertClose(cl, img, 0, 0);
  })));
});

describe('views and joins', () => {
  test('reshape/view/permute/transpose/flatten/squeeze/expand/repeat', () => noLeak(() => tidy(() => {
    const x = torch.arange(6).reshape(2, 3);
    assert.deepEqual(x.shape, [2, 3]);
    assert.deepEqual(x.transpose(0, 1).toArray(), [0, 3, 1, 4, 2, 5]);
    assert.deepEqual(x.permute(1, 0).shape, [3, 2]);
    assert.deepEqual(x.view([3, 2]).shape, [3, 2]);
    assert.deepEqual(x.flatten().shape, [6]);
    assert.deepEqual(x.unsqueeze(0).shape, [1, 2, 3]);
    assert.deepEqual(x.unsqueeze(1).squeeze(1).shape, [2, 3]);
    assert.deepEqual(torch.ones([1, 3]).expand(4, 3).shape, [4, 3]);
    assert.deepEqual(torch.tensor([1, 2]).repeat(2).toArray(), [1, 2, 1, 2]);
    assert.ok(x.view([6]).sharesStorageWith(x));
    assert.deepEqual(x.flip([1]).toArray(), [2, 1, 0, 5, 4, 3]);
    assert.throws(() => x.transpose(0, 1).view([6]), (e: Error) => /view size is not compatible/.test(e.message));
  })));

  test('chunk/split/narrow/select/slice/index/cat/stack/indexSelect/gather', () => noLeak(() => tidy(() => {
    const x = torch.arange(10);
    assert.deepEqual(x.chunk(2).map((t) => t.toArray()), [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]);
    assert.deepEqual(x.split(4).map((t) => t.shape[0]), [4, 4, 2]);
    assert.deepEqual(x.split([3, 7]).map((t) => t.shape[0]), [3, 7]);
    assert.deepEqual(x.narrow(0, 2, 3).toArray(), [2, 3, 4]);
    assert.deepEqual(x.slice(0, 1, null, 3).toArray(), [1, 4, 7]);
    assert.equal(x.select(0, -1).item(), 9);
    assert.deepEqual(x.index([torch.tensor([0, 9], { dtype: 'int64' })]).toArray(), [0, 9]);
    assert.deepEqual(torch.cat([x.narrow(0, 0, 2), x.narrow(0, 8, 2)]).toArray(), [0, 1, 8, 9]);
    assert.deepEqual(torch.stack([x, x], 1).shape, [10, 2]);
    const m = torch.arange(6).reshape(2, 3);
    assert.deepEqual(m.indexSelect(1, torch.tensor([2, 0], { dtype: 'int64' })).toArray(), [2, 0, 5, 3]);
    assert.deepEqual(m.gather(1, torch.tensor([[0, 0], [2, 1]], { dtype: 'int64' })).toArray(), [0, 0, 5, 4]);
  })));
});

describe('math', () => {
  test('arithmetic with tensors and scalars keeps PyTorch type promotion', () => noLeak(() => tidy(() => {
    const a = torch.tensor([1, 2, 3], { dtype: 'int64' });
    const b = torch.tensor([0.5, 0.25, 2]);
    assert.equal(a.add(1).dtype, 'int64');
    assert.equal(a.add(0.5).dtype, 'float32');
    assert.deepEqual(a.add(b, 2).toArray(), [2, 2.5, 7]);
    assert.deepEqual(a.sub(b).toArray(), [0.5, 1.75, 1]);
    assert.deepEqual(a.mul(b).toArray(), [0.5, 0.5, 6]);
    assert.deepEqual(a.div(2).toArray(), [0.5, 1, 1.5]); // true division
    assert.deepEqual(a.div(2, 'floor').toArray(), [0, 1, 1]);
    assert.deepEqual(b.rsub(1).toArray(), [0.5, 0.75, -1]);
    assert.deepEqual(a.pow(2).toArray(), [1, 4, 9]);
    assertClose(b.sqrt(), [Math.SQRT1_2, 0.5, Math.SQRT2]);
    assertClose(b.exp().log(), b);
    assert.deepEqual(torch.tensor([-2, 0.5, 3]).clamp(-1, 1).toArray(), [-1, 0.5, 1]);
    assert.deepEqual(torch.where(a.gt(1), a, 0).toArray(), [0, 2, 3]);
    assert.deepEqual(a.eq(2).toArray(), [0, 1, 0]);
    assertClose(torch.tensor([0.0, 1.0]).lerp(torch.tensor([1.0, 3.0]), 0.5), [0.5, 2]);
    assertClose(torch.zeros([2]).addcmul(torch.tensor([2, 3]), torch.tensor([4, 5]), 0.5), [4, 7.5]);
    assertClose(torch.tensor([0, 1]).sigmoid(), [0.5, 1 / (1 + Math.exp(-1))]);
  })));

  test('in-place methods return the same object and change it', () => noLeak(() => tidy(() => {
    const x = torch.ones([2]);
    assert.equal(x.add_(1), x);
    assert.equal(x.mul_(torch.tensor([2, 3])), x);
    assert.deepEqual(x.toArray(), [4, 6]);
    x.clamp_(null, 5).sub_(1).div_(2);
    assert.deepEqual(x.toArray(), [1.5, 2]);
    x.zero_();
    assert.deepEqual(x.toArray(), [0, 0]);
    x.fill_(3).copy_(torch.tensor([9, 8]));
    assert.deepEqual(x.toArray(), [9, 8]);
  })));

  test('reductions with dims and keepdim', () => noLeak(() => tidy(() => {
    const x = torch.tensor([[1, 2, 3], [4, 5, 6]]);
    assert.equal(x.sum().item(), 21);
    assert.deepEqual(x.sum(0).toArray(), [5, 7, 9]);
    assert.deepEqual(x.mean(1, true).shape, [2, 1]);
    assert.deepEqual(x.mean(1).toArray(), [2, 5]);
    assert.deepEqual(x.mean([0, 1]).toArray(), [3.5]);
    assertClose(x.var(1), [1, 1]); // unbiased (correction 1) by default
    assertClose(x.var(1, { correction: 0 }), [2 / 3, 2 / 3]);
    assertClose(x.std(), [Math.sqrt(3.5)]);
    assert.equal(x.max().item(), 6);
    const { values, indices } = x.max(1);
    assert.deepEqual(values.toArray(), [3, 6]);
    assert.deepEqual(indices.toArray(), [2, 2]);
    assert.deepEqual(x.argmax(0).toArray(), [1, 1, 1]);
    assertClose(x.norm(), [Math.sqrt(91)]);
    assertClose(x.norm(1, 1), [6, 15]);
  })));

  test('matmul, bmm, baddbmm, einsum', () => noLeak(() => tidy(() => {
    const a = torch.tensor([[1, 2], [3, 4]]);
    const b = torch.tensor([[5, 6], [7, 8]]);
    assert.deepEqual(a.matmul(b).toArray(), [19, 22, 43, 50]);
    const ba = a.unsqueeze(0).repeat(2, 1, 1);
    const bb = b.unsqueeze(0).repeat(2, 1, 1);
    assert.deepEqual(ba.bmm(bb).shape, [2, 2, 2]);
    const base = torch.ones([2, 2, 2]);
    assert.deepEqual(base.baddbmm(ba, bb, { beta: 2, alpha: 0.5 }).select(0, 0).toArray(), [11.5, 13, 23.5, 27]);
    assert.deepEqual(torch.einsum('ij,jk->ik', a, b).toArray(), [19, 22, 43, 50]);
    assert.deepEqual(torch.einsum('ii', a).toArray(), [5]);
  })));
});

describe('host access and metadata', () => {
  test('item, toArray, shape, numel, toString', () => noLeak(() => tidy(() => {
    const x = torch.zeros([2, 3, 4]);
    assert.equal(x.numel(), 24);
    assert.equal(x.ndim, 3);
    assert.equal(x.size(-1), 4);
    assert.equal(String(x), 'Tensor(shape=[2, 3, 4], dtype=float32, device=cpu)');
    assert.equal(torch.tensor(true).item(), 1);
    assert.throws(() => x.item(), /a Tensor with 24 elements cannot be converted to Scalar/);
  })));
});

describe('errors', () => {
  test('libtorch errors become JS Errors with the original message, and the process goes on', () => noLeak(() => tidy(() => {
    const x = torch.zeros([2, 3]);
    assert.throws(() => x.matmul(torch.zeros([2, 3])), (e: Error & { code?: string }) =>
      e.code === 'TORCH_ERROR' && /mat1 and mat2 shapes cannot be multiplied \(2x3 and 2x3\)/.test(e.message));
    assert.throws(() => x.reshape(7), (e: Error) => /shape '\[7\]' is invalid for input of size 6/.test(e.message));
    assert.throws(() => x.select(0, 5), (e: Error & { code?: string }) => e instanceof RangeError && e.code === 'TORCH_INDEX_ERROR');
    assert.throws(() => torch.cat([]), /expected a non-empty list of Tensors/);
    assert.throws(() => x.to('float99' as torch.DType), (e: Error) => e instanceof TypeError && /invalid device 'float99'/.test(e.message));
    // wrong JS types are TypeErrors naming the operator and argument
    assert.throws(() => (x as unknown as { reshape(a: unknown): void }).reshape('a'), (e: Error) => e instanceof TypeError && /aten::reshape: argument 'shape'/.test(e.message));
    assert.equal(x.add(1).sum().item(), 6); // still alive
  })));

  test('a disposed tensor fails clearly, and dispose is idempotent', () => {
    const x = torch.ones([2]);
    x.dispose();
    x.dispose();
    assert.ok(x.isDisposed);
    assert.throws(() => x.add(1), (e: Error & { code?: string }) => e.code === 'TENSOR_DISPOSED');
    assert.equal(String(x), 'Tensor(disposed)');
  });
});
