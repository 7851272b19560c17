// The command line as a user runs it: doctor, inspect (good, bad and hostile files), parity.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fixturesDir, projectRoot, testFixtures } from './helpers/fixtures.js';

const bin = join(projectRoot, 'bin', 'diffusion-dpo.js');
const dir = mkdtempSync(join(tmpdir(), 'dpo-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: projectRoot });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('diffusion-dpo', () => {
  test('no command prints usage and exits 2; unknown command and unknown flag are errors', () => {
    const none = cli();
    assert.equal(none.code, 2);
    assert.match(none.out, /usage: diffusion-dpo <command>/);
    const bad = cli('frobnicate');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /unknown command 'frobnicate'/);
    const flag = cli('doctor', '--no-such-flag');
    assert.equal(flag.code, 2);
    assert.match(flag.err, /unknown flag '--no-such-flag'/);
  });

  test('typos get the nearest flag or command; values are typed and checked by one parser for every command', () => {
    const train = cli('train', '--pretrained_model_name_or_path', 'm', '--dataset_name', 'd', '--learning_rat', '1e-5');
    assert.equal(train.code, 2);
    assert.match(train.err, /unknown flag '--learning_rat'; did you mean --learning_rate\?/);
    const sample = cli('sample', '--pretrained_model_name_or_path', 'm', '--num-inference-step', '3');
    assert.equal(sample.code, 2);
    assert.match(sample.err, /unknown flag '--num-inference-step'; did you mean --num_inference_steps\?/);
    const steps = cli('sample', '--pretrained_model_name_or_path', 'm', '--prompt', 'x', '--num_inference_steps', '2.5');
    assert.equal(steps.code, 2);
    assert.match(steps.err, /--num_inference_steps must be an integer, got '2\.5'/);
    const data = cli('data', 'x', '--concurrency', '0');
    assert.equal(data.code, 2);
    assert.match(data.err, /--concurrency must be >= 1/);
    const command = cli('trian');
    assert.equal(command.code, 2);
    assert.match(command.err, /unknown command 'trian'; did you mean train\?/);
  });

  test('input errors are one line; --debug adds the stack; an unexpected error always shows its stack', async () => {
    const missing = cli('data', join(dir, 'nothing-here'));
    assert.equal(missing.code, 1);
    assert.equal(missing.err.trim().split('\n').length, 1, missing.err);
    const debug = cli('data', join(dir, 'nothing-here'), '--debug');
    assert.equal(debug.code, 1);
    assert.match(debug.err, /nothing-here: no such file or folder\n\s+at /);
    const { runCommand } = await import('../src/cli/main.js');
    const { mock } = await import('node:test');
    const err = mock.method(console, 'error', () => undefined);
    try {
      const code = await runCommand('bugged', { summary: '', run: () => (undefined as unknown as { x: number }).x }, []);
      assert.equal(code, 1);
      const printed = String(err.mock.calls[0]!.arguments[0]);
      assert.match(printed, /diffusion-dpo bugged: unexpected error .*\nTypeError: Cannot read properties of undefined/);
      assert.match(printed, /\n\s+at /, 'with its stack');
    } finally {
      err.mock.restore();
    }
  });

  test('OS errors name the path and the error code', async () => {
    const { writeTinyPipeline, writeWarmPreferenceSet } = await import('./helpers/tiny_pipeline.js');
    writeTinyPipeline(join(dir, 'tiny'), 0);
    const data = await writeWarmPreferenceSet(join(dir, 'tiny-data'), 4, 16, 0);
    // /sys refuses new folders even to root (EPERM); a read-only mount would say EROFS the same way
    const r = cli('train', '--pretrained_model_name_or_path', join(dir, 'tiny'), '--dataset_name', data, '--resolution', '16',
      '--mixed_precision', 'no', '--output_dir', '/sys/dpo-test-output');
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /diffusion-dpo train: E[A-Z]+: [a-z ]+, mkdir '\/sys\/dpo-test-output'/);
  });

  test('doctor --json reports libtorch, threads and a matmul figure', () => {
    const r = cli('doctor', '--json');
    assert.equal(r.code, 0, r.err);
    const report = JSON.parse(r.out) as { torch: { version: string }; threads: number; matmulGflops: { cpu: number }; warnings: string[] };
    assert.match(report.torch.version, /^2\.\d+\.\d+$/);
    assert.ok(report.threads >= 1);
    assert.ok(report.matmulGflops.cpu > 0);
    assert.ok(Array.isArray(report.warnings));
  });

  test('inspect lists a safetensors file and a PyTorch checkpoint', () => {
    const st = cli('inspect', join(fixturesDir, 'tiny-sd', 'vae', 'diffusion_pytorch_model.safetensors'));
    assert.equal(st.code, 0, st.err);
    assert.match(st.out, /encoder\.conv_in\.weight\s+float32\s+\[32, 3, 3, 3\]\s+3\.4 KiB/);
    assert.match(st.out, /124 tensors, 658,375 values/);
    const pt = cli('inspect', '--json', join(testFixtures, 'checkpoints', 'state_dict.pt'));
    assert.equal(pt.code, 0, pt.err);
    const j = JSON.parse(pt.out) as { format: string; tensors: { name: string; dtype: string; shape: number[] }[] };
    assert.equal(j.format, 'pytorch');
    assert.deepEqual(j.tensors.find((t) => t.name === 'transposed'), { name: 'transposed', dtype: 'float32', shape: [6, 4], bytes: 96 });
  });

  test('inspect on bad or hostile files: one line on stderr, exit 1, nothing run', () => {
    const garbage = join(dir, 'garbage.safetensors');
    writeFileSync(garbage, Buffer.from('\x10\x00\x00\x00\x00\x00\x00\x00{"a": oops}     '));
    for (const [file, re] of [
      [garbage, /not valid JSON/],
      [join(testFixtures, 'checkpoints', 'hostile.pt'), /refusing to load global/],
      [join(testFixtures, 'checkpoints', 'legacy.pt'), /legacy \(pre-1\.6/],
      [join(dir, 'missing.bin'), /cannot read \(ENOENT\)/],
    ] as const) {
      const r = cli('inspect', file);
      assert.equal(r.code, 1, `${file}: ${r.out}`);
      assert.equal(r.out, '');
      assert.equal(r.err.trim().split('\n').length, 1, r.err);
      assert.match(r.err, re);
    }
  });

  test('inspect lists 130,000 tensors in table mode', () => {
    // a safetensors file written by hand: 130k one-element float32 tensors
    const n = 130_000;
    const header: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) header[`layer.${i}.weight`] = { dtype: 'F32', shape: [1], data_offsets: [4 * i, 4 * i + 4] };
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    const file = join(dir, 'many.safetensors');
    writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(4 * n)]));
    const r = spawnSync(process.execPath, [bin, 'inspect', file], { encoding: 'utf8', maxBuffer: 1 << 28 });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim().split('\n').length, n + 3, 'header, one line per tensor, a blank line and the total');
    assert.match(r.stdout, /130000 tensors, 130,000 values/);
  });

  test('a zip-bomb checkpoint is refused before it inflates, whatever its header declares', async () => {
    const { deflateRawSync, constants } = await import('node:zlib');
    // 256 MiB of zeros as 256 independently compressed 1 MiB pieces (about 1 KiB each), then a final empty block
    const piece = deflateRawSync(Buffer.alloc(1 << 20), { finishFlush: constants.Z_SYNC_FLUSH });
    const data = Buffer.concat([...Array.from({ length: 256 }, () => piece), Buffer.from([0x03, 0x00])]);
    const zip = (declared: number) => {
      const name = Buffer.from('archive/data.pkl');
      const local = Buffer.alloc(30);
      local.writeUInt32LE(0x04034b50, 0);
      local.writeUInt16LE(8, 8); // deflate
      local.writeUInt32LE(data.length, 18);
      local.writeUInt32LE(declared, 22);
      local.writeUInt16LE(name.length, 26);
      const central = Buffer.alloc(46);
      central.writeUInt32LE(0x02014b50, 0);
      central.writeUInt16LE(8, 10);
      central.writeUInt32LE(data.length, 20);
      central.writeUInt32LE(declared, 24);
      central.writeUInt16LE(name.length, 28);
      central.writeUInt32LE(0, 42);
      const dirOffset = local.length + name.length + data.length;
      const eocd = Buffer.alloc(22);
      eocd.writeUInt32LE(0x06054b50, 0);
      eocd.writeUInt16LE(1, 8);
      eocd.writeUInt16LE(1, 10);
      eocd.writeUInt32LE(central.length + name.length, 12);
      eocd.writeUInt32LE(dirOffset, 16);
      return Buffer.concat([local, name, data, central, name, eocd]);
    };
    const { inspectFile } = await import('../src/cli/inspect.js');
    const before = process.resourceUsage().maxRSS;
    for (const [declared, re] of [[0xfffffff0, /inflates to 4294967280 bytes, more than the 64 MiB allowed/], [1000, /inflates to more than its declared 1000 bytes/]] as const) {
      const file = join(dir, `bomb-${declared}.pt`);
      writeFileSync(file, zip(declared));
      assert.throws(() => inspectFile(file), re);
    }
    const grewMb = (process.resourceUsage().maxRSS - before) / 1024;
    assert.ok(grewMb < 100, `peak memory grew ${grewMb.toFixed(0)} MB`);
  });
});

describe('npm run parity', () => {
  const parity = join(projectRoot, 'dist', 'src', 'parity', 'main.js');
  test('passes on the optimizer and schedule cases and prints the worst error per case', () => {
    const r = spawnSync(process.execPath, [parity, fixturesDir, '--kind', 'optimizer,lr_schedule'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /optim_adamw\s+optimizer\s+pass\s+params\.step\d\.p\d\s+\S+e-\d+/);
    assert.match(r.stdout, /3 passed, 0 failed, 0 unsupported, 0 errors \(3 cases\)/);
  });
  test('exits non-zero when a folder has cases it cannot run', () => {
    const cases = join(dir, 'fixtures', 'cases');
    mkdirSync(cases, { recursive: true });
    writeFileSync(join(cases, 'future.json'), JSON.stringify({ name: 'future', kind: 'not_a_kind_yet' }));
    const r = spawnSync(process.execPath, [parity, join(dir, 'fixtures')], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stdout, /future\s+not_a_kind_yet\s+UNSUPPORTED/);
  });
});

describe('diffusion-dpo data', () => {
  test('prints the summary and dumps side-by-side PNGs, preferred on the left', async () => {
    const { makeRows, writeShard } = await import('./helpers/pickapic.js');
    const src = join(dir, 'pap', 'data');
    mkdirSync(src, { recursive: true });
    writeShard(join(src, 'train-00000-of-00001.parquet'), await makeRows(12, { tieEvery: 4 }));
    const out = join(dir, 'dump');
    const r = cli('data', join(dir, 'pap'), '--dump', '2', out, '--resolution', '32', '--no_hflip');
    assert.equal(r.code, 0, r.err);
    const summary = JSON.parse(r.out) as { rowsRead: number; tiesRemoved: number; kept: number; dumped: number };
    assert.deepEqual([summary.rowsRead, summary.tiesRemoved, summary.kept, summary.dumped], [12, 3, 9, 2]);
    const sharp = (await import('sharp')).default;
    const files = (await import('node:fs')).readdirSync(out).sort();
    assert.equal(files.length, 2);
    const { data, info } = await sharp(join(out, files[0]!)).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height], [64, 32]);
    const px = (x: number) => data.subarray((16 * 64 + x) * info.channels, (16 * 64 + x) * info.channels + 3);
    assert.ok(px(8)[0]! > px(8)[2]!, 'left: the warm preferred image');
    assert.ok(px(40)[2]! > px(40)[0]!, 'right: the cool dispreferred image');
    assert.match((JSON.parse(r.out) as { images: string }).images, /not decoded/, 'the plain summary says it did not decode images');
    const bad = cli('data', join(dir, 'nothing-here'));
    assert.equal(bad.code, 1);
    assert.match(bad.err, /nothing-here: no such file or folder/);
  });

  test('--verify decodes every image and reports exactly the unusable rows; --write_exclude and --exclude_rows', async () => {
    const { makeRows, writeShard } = await import('./helpers/pickapic.js');
    const src = join(dir, 'verify', 'data');
    mkdirSync(src, { recursive: true });
    // two Pick-a-Pic-schema shards; the damage sits at known rows (ids count across shards)
    const rows = await makeRows(20);
    const truncated = rows[0]!.jpg0!.subarray(0, 300);
    const damage: Record<number, (r: (typeof rows)[number]) => (typeof rows)[number]> = {
      2: (r) => ({ ...r, jpg0: new Uint8Array([0xff, 0xd8, 1, 2, 3]) }), // not a JPEG after its marker
      7: (r) => ({ ...r, jpg1: truncated }), // truncated JPEG
      11: (r) => ({ ...r, jpg1: null }), // missing image
      13: (r) => ({ ...r, caption: null }), // null caption
      18: (r) => ({ ...r, label0: 0.3, label1: 0.7 }), // label outside {0, 0.5, 1}
    };
    const damaged = rows.map((r, i) => (damage[i] ? damage[i]!(r) : r));
    writeShard(join(src, 'train-00000-of-00002.parquet'), damaged.slice(0, 10), { rowGroupSize: 4 });
    writeShard(join(src, 'train-00001-of-00002.parquet'), damaged.slice(10), { rowGroupSize: 4, imageStruct: true });
    const exclude = join(dir, 'exclude.jsonl');
    const r = cli('data', join(dir, 'verify'), '--verify', '--write_exclude', exclude);
    assert.equal(r.code, 3, r.err);
    const v = (JSON.parse(r.out) as { verify: { rows_checked: number; images_decoded: number; ids: number[]; by_reason: Record<string, number> } }).verify;
    assert.deepEqual(v.ids, [2, 7, 11, 13, 18]);
    assert.deepEqual(v.by_reason, { undecodable_image: 2, missing_image: 1, null_caption: 1, bad_label: 1 });
    assert.equal(v.rows_checked, 19, 'the row with a bad label is dropped by the scan, the others are read');
    assert.equal(v.images_decoded, 2 * 15 + 1 + 1, 'both images of the 15 good rows, and the first of rows 7 and 11');
    assert.match(r.err, /verify: 19\/19 rows, 5 unusable/);
    const clean = cli('data', join(dir, 'verify'), '--verify', '--exclude_rows', exclude);
    assert.equal(clean.code, 0, clean.err);
    assert.deepEqual((JSON.parse(clean.out) as { excluded: number; verify: { ids: number[] } }).verify.ids, []);
    assert.equal((JSON.parse(clean.out) as { excluded: number }).excluded, 5);
    assert.equal(cli('data', join(dir, 'verify'), '--write_exclude', exclude).code, 2, '--write_exclude without --verify');
  });
});

describe('the addon build', () => {
  test('a CUDA libtorch is linked by paths (no CUDA toolkit needed), a CPU one through CMake; the variable overrides', async () => {
    const { mkdirSync: mk, writeFileSync: wf } = await import('node:fs');
    const find = (await import(join(projectRoot, 'scripts', 'find-libtorch.js'))) as {
      findLibtorch(): { cuda: boolean; version: string }; linkByPaths(t: { cuda: boolean }, env: Record<string, string>): boolean;
    };
    // a fake libtorch folder: version header and libraries, with and without libtorch_cuda.so
    const fake = (name: string, cuda: boolean) => {
      const root = join(dir, name);
      mk(join(root, 'include', 'torch', 'csrc', 'api', 'include', 'torch'), { recursive: true });
      mk(join(root, 'lib'), { recursive: true });
      wf(join(root, 'include', 'torch', 'csrc', 'api', 'include', 'torch', 'version.h'), '#define TORCH_VERSION_MAJOR 2\n#define TORCH_VERSION_MINOR 14\n#define TORCH_VERSION_PATCH 1\n');
      wf(join(root, 'lib', 'libtorch.so'), '');
      if (cuda) wf(join(root, 'lib', 'libtorch_cuda.so'), '');
      return root;
    };
    const old = process.env.LIBTORCH;
    try {
      process.env.LIBTORCH = fake('cuda-torch', true);
      const cuda = find.findLibtorch();
      assert.deepEqual([cuda.version, cuda.cuda], ['2.14.1', true]);
      process.env.LIBTORCH = fake('cpu-torch', false);
      const cpu = find.findLibtorch();
      assert.equal(cpu.cuda, false);
      assert.equal(find.linkByPaths(cuda, {}), true);
      assert.equal(find.linkByPaths(cpu, {}), false);
      assert.equal(find.linkByPaths(cuda, { DPO_TORCH_PATHS_MODE: '0' }), false);
      assert.equal(find.linkByPaths(cpu, { DPO_TORCH_PATHS_MODE: '1' }), true);
    } finally {
      if (old === undefined) delete process.env.LIBTORCH;
      else process.env.LIBTORCH = old;
    }
  });
});
