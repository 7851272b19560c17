// PyTorch checkpoints through the restricted unpickler. The files are made by
// test/fixtures/checkpoints/make_checkpoints.py with torch.save; expected.json holds their values.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { assertClose, noLeak } from './helpers/assert.js';
import { testFixtures } from './helpers/fixtures.js';

const dir = join(testFixtures, 'checkpoints');
const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Record<string, Record<string, { dtype: string; shape: number[]; values: number[] }>>;

describe('PyTorch checkpoints', () => {
  for (const file of ['state_dict.pt', 'nested.pt', 'parameter.pt']) {
    test(`${file}: every tensor with its dtype, shape and values (views resolved)`, () => noLeak(() => torch.tidy(() => {
      const tensors = torch.loadTorchCheckpoint(join(dir, file));
      const want = expected[file]!;
      assert.deepEqual([...tensors.keys()], Object.keys(want));
      for (const [name, e] of Object.entries(want)) {
        const t = tensors.get(name)!;
        assert.equal(t.dtype, e.dtype, name);
        assert.deepEqual(t.shape, e.shape, name);
        assert.ok(t.isContiguous(), `${name} is contiguous after loading`);
        assertClose(t.toArray(), e.values, 0, 0, name);
      }
    })));
  }

  test('non-tensor values of the object tree are kept', () => {
    const ckpt = torch.TorchCheckpoint.open(join(dir, 'nested.pt'));
    const root = ckpt.root as Map<string, unknown>;
    assert.equal(root.get('epoch'), 3);
    assert.deepEqual(root.get('names'), ['a', 'b']);
    assert.equal(root.get('lr'), 0.5);
    ckpt.close();
  });

  test('a pickle that calls os.system is refused without running it', () => {
    rmSync('/tmp/diffusion-dpo-pwned', { force: true });
    assert.throws(() => torch.TorchCheckpoint.open(join(dir, 'hostile.pt')), (e: Error) =>
      e instanceof torch.CheckpointError && /refusing to load global 'posix.system'|refusing to load global 'os.system'/.test(e.message));
    assert.ok(!existsSync('/tmp/diffusion-dpo-pwned'));
  });

  test('the legacy non-zip format is recognised and reported', () => {
    assert.throws(() => torch.TorchCheckpoint.open(join(dir, 'legacy.pt')), /legacy \(pre-1\.6, non-zip\) PyTorch format/);
  });

  test('other files: not a zip, missing, truncated', () => {
    assert.throws(() => torch.TorchCheckpoint.open(join(dir, 'expected.json')), /not a PyTorch checkpoint/);
    assert.throws(() => torch.TorchCheckpoint.open(join(dir, 'missing.pt')), /cannot open \(ENOENT\)/);
  });
});
