// safetensors read/write: every dtype round-trips, the fixture models' files read with the
// expected shapes, and each kind of malformed file gets an error naming the file and the problem.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { fixturesDir } from './helpers/fixtures.js';
import { noLeak } from './helpers/assert.js';

const { tidy } = torch;
const dir = mkdtempSync(join(tmpdir(), 'dpo-st-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A file with the given header object and data bytes. */
function craft(name: string, header: unknown, data = Buffer.alloc(0), lengthOverride?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat([len, json, data]));
  return path;
}

describe('safetensors', () => {
  test('every dtype round-trips bit for bit, with metadata, aligned data', () => noLeak(() => tidy(() => {
    const tensors = new Map<string, torch.Tensor>();
    for (const d of torch.DTYPES) tensors.set(`t_${d}`, torch.arange(0, 6).reshape(2, 3).to(d));
    tensors.set('empty', torch.zeros([0, 4]));
    tensors.set('scalar', torch.tensor(1.25));
    const path = join(dir, 'all.safetensors');
    torch.saveSafetensors(path, tensors, { format: 'pt' });
    const f = torch.SafetensorsFile.open(path);
    assert.deepEqual(f.metadata, { format: 'pt' });
    assert.deepEqual(new Set(f.keys()), new Set(tensors.keys()));
    for (const [name, t] of tensors) {
      const back = f.get(name);
      assert.equal(back.dtype, t.dtype, name);
      assert.deepEqual(back.shape, t.shape, name);
      assert.deepEqual(back.toArray(), t.toArray(), name);
      assert.equal(f.tensors.get(name)!.begin % torch.ELEMENT_SIZE[t.dtype], 0, `${name} is aligned to its element size`);
    }
    const view = f.get('t_float32', { view: true });
    view.add_(1); // a private (copy-on-write) mapping: the file on disk must not change
    const reopened = torch.SafetensorsFile.open(path);
    assert.deepEqual(reopened.get('t_float32').toArray(), [0, 1, 2, 3, 4, 5]);
    reopened.close();
    assert.equal(f.get('t_float16', { dtype: 'float32' }).dtype, 'float32');
    f.close();
  })));

  test('reads the fixture models (F32 and I64 tensors) as the README lists them', () => noLeak(() => tidy(() => {
    const path = join(fixturesDir, 'tiny-sd', 'text_encoder', 'model.safetensors');
    const f = torch.SafetensorsFile.open(path);
    assert.equal(f.tensors.size, 85);
    const ids = f.get('text_model.embeddings.position_ids');
    assert.equal(ids.dtype, 'int64');
    assert.deepEqual(ids.shape, [1, 77]);
    assert.deepEqual(ids.toArray().slice(0, 3), [0, 1, 2]);
    let values = 0;
    for (const t of f.tensors.values()) values += t.shape.reduce((a, b) => a * b, 1);
    assert.equal(values, 1_617_606);
    f.close();
  })));

  test('malformed files get a clear error naming the file', () => {
    const cases: [string, string, RegExp][] = [
      ['short', (() => { const p = join(dir, 'short.safetensors'); writeFileSync(p, Buffer.from([1, 2])); return p; })(), /too short/],
      ['huge header length', craft('hl.safetensors', {}, Buffer.alloc(0), 1n << 40n), /larger than the 100 MB limit/],
      ['header past the end', craft('hp.safetensors', {}, Buffer.alloc(0), 500n), /runs past the end of the file/],
      ['bad json', craft('bj.safetensors', '{"a": [1, 2'), /not valid JSON/],
      ['not an object', craft('no.safetensors', '[1, 2]'), /not a JSON object/],
      ['bad dtype', craft('bd.safetensors', { a: { dtype: 'Q7', shape: [1], data_offsets: [0, 4] } }, Buffer.alloc(4)), /unsupported dtype "Q7"/],
      ['bad shape', craft('bs.safetensors', { a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, Buffer.alloc(4)), /invalid shape/],
      ['offsets outside', craft('oo.safetensors', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, Buffer.alloc(4)), /outside the data section/],
      ['size mismatch', craft('sm.safetensors', { a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, Buffer.alloc(8)), /has 8 bytes but F32 x \[3\] needs 12/],
      ['overlap', craft('ov.safetensors', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, Buffer.alloc(12)), /'a' and 'b' overlap/],
      ['reversed offsets', craft('ro.safetensors', { a: { dtype: 'F32', shape: [0], data_offsets: [4, 0] } }, Buffer.alloc(4)), /invalid data_offsets/],
      ['missing file', join(dir, 'nope.safetensors'), /cannot open \(ENOENT\)/],
    ];
    for (const [what, path, re] of cases) {
      assert.throws(() => torch.SafetensorsFile.open(path), (e: Error) => {
        assert.ok(e instanceof torch.SafetensorsError, `${what}: ${e.constructor.name}`);
        assert.ok(e.message.startsWith(path), `${what}: message names the file: ${e.message}`);
        assert.match(e.message, re, what);
        return true;
      });
    }
  });

  test('writes are atomic: a failed save leaves the previous file intact and no temp file', () => noLeak(() => tidy(() => {
    const path = join(dir, 'atomic.safetensors');
    torch.saveSafetensors(path, { a: torch.ones([2]) });
    const before = readFileSync(path);
    const disposed = torch.ones([2]);
    disposed.dispose();
    assert.throws(() => torch.saveSafetensors(path, { a: torch.zeros([2]), b: disposed }), /disposed/);
    assert.deepEqual(readFileSync(path), before);
    assert.deepEqual(torch.loadSafetensors(path).get('a')!.toArray(), [1, 1]);
    const ro = join(dir, 'ro');
    writeFileSync(join(dir, 'placeholder'), '');
    if (process.getuid?.() !== 0) {
      chmodSync(dir, 0o500);
      assert.throws(() => torch.saveSafetensors(join(ro, 'x.safetensors'), { a: torch.ones([1]) }), /cannot write/);
      chmodSync(dir, 0o700);
    }
    assert.throws(() => torch.saveSafetensors(join(dir, 'no', 'such', 'dir.safetensors'), { a: torch.ones([1]) }), /cannot write.*No such file/);
    assert.ok(!existsSync(join(dir, 'no')));
  })));
});
