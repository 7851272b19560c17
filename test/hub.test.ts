// The Hub path against a local fake server (never the network): a snapshot is downloaded into
// the Hugging Face cache layout, found again offline, resumed from a partial file, and gated
// repos need HF_TOKEN.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as hub from '../src/hub/index.js';
import { loadPipeline, disposePipeline } from '../src/models/index.js';
import { fixturesDir } from './helpers/fixtures.js';

const COMMIT = 'a'.repeat(40);
const repoDir = join(fixturesDir, 'tiny-sd');
const cache = mkdtempSync(join(tmpdir(), 'dpo-hub-'));
let server: Server;
let endpoint = '';
const requests: { method: string; url: string; range?: string; auth?: string }[] = [];
const datasetFiles = new Map<string, Buffer>();

function listFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile())
    .map((d) => relative(dir, join(d.parentPath ?? (d as unknown as { path: string }).path, d.name)));
}

before(async () => {
  const { makeRows, writeShard } = await import('./helpers/pickapic.js');
  const tmp = mkdtempSync(join(tmpdir(), 'dpo-hub-ds-'));
  writeShard(join(tmp, 'train.parquet'), await makeRows(8, { tieEvery: 4 }));
  datasetFiles.set('data/train-00000-of-00001.parquet', readFileSync(join(tmp, 'train.parquet')));
  datasetFiles.set('data/validation-00000-of-00001.parquet', Buffer.from('never fetched'));
  rmSync(tmp, { recursive: true, force: true });
  server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    requests.push({ method: req.method!, url: url.pathname, range: req.headers.range, auth: req.headers.authorization });
    if (url.pathname === '/api/datasets/test-org/pap/revision/main') {
      const siblings = ['README.md', 'data/train-00000-of-00001.parquet', 'data/validation-00000-of-00001.parquet'].map((rfilename) => ({ rfilename }));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sha: COMMIT, siblings }));
      return;
    }
    const ds = url.pathname.match(/^\/datasets\/test-org\/pap\/resolve\/[0-9a-f]{40}\/(.+)$/);
    if (ds) {
      const body = datasetFiles.get(decodeURIComponent(ds[1]!));
      if (!body) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { etag: `"${createHash('sha256').update(body).digest('hex')}"`, 'content-length': body.length }).end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    const m = url.pathname.match(/^\/api\/models\/test-org\/(tiny-sd|private-sd)\/revision\/([^/]+)$/);
    const gated = url.pathname.includes('private-sd');
    if (gated && req.headers.authorization !== 'Bearer secret') {
      res.writeHead(401).end();
      return;
    }
    if (m) {
      const siblings = [...listFiles(repoDir), 'unet/diffusion_pytorch_model.bin', 'v1-5-pruned.ckpt'].map((rfilename) => ({ rfilename }));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sha: COMMIT, siblings }));
      return;
    }
    const f = url.pathname.match(/^\/test-org\/(?:tiny-sd|private-sd)\/resolve\/([0-9a-f]{40})\/(.+)$/);
    if (!f || f[1] !== COMMIT) {
      res.writeHead(404).end();
      return;
    }
    const path = join(repoDir, decodeURIComponent(f[2]!));
    if (!existsSync(path)) {
      res.writeHead(404).end();
      return;
    }
    const body = readFileSync(path);
    const etag = createHash('sha256').update(body).digest('hex');
    const range = req.headers.range?.match(/^bytes=(\d+)-$/);
    if (req.method === 'HEAD') {
      res.writeHead(200, { etag: `"${etag}"`, 'content-length': body.length }).end();
    } else if (range) {
      const start = Number(range[1]);
      res.writeHead(206, { 'content-length': body.length - start, 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` }).end(body.subarray(start));
    } else {
      res.writeHead(200, { etag: `"${etag}"`, 'content-length': body.length }).end(body);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as { port: number };
  endpoint = `http://127.0.0.1:${addr.port}`;
});
after(() => {
  server.close();
  rmSync(cache, { recursive: true, force: true });
});

describe('Hugging Face Hub', () => {
  test('cache paths follow huggingface_hub (HF_HUB_CACHE, HF_HOME)', () => {
    assert.equal(hub.hubCacheDir({ HF_HUB_CACHE: '/c' }), '/c');
    assert.equal(hub.hubCacheDir({ HF_HOME: '/h' }), '/h/hub');
    assert.equal(hub.repoFolderName('runwayml/stable-diffusion-v1-5'), 'models--runwayml--stable-diffusion-v1-5');
    assert.throws(() => hub.checkRepoId('../etc'), /not a valid Hugging Face repo id/);
  });

  test('file selection: configs, tokenizer files and one weight format per component', () => {
    const files = ['model_index.json', 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'unet/diffusion_pytorch_model.bin',
      'unet/diffusion_pytorch_model.fp16.safetensors', 'vae/diffusion_pytorch_model.bin', 'tokenizer/merges.txt', 'v1-5-pruned.ckpt'];
    assert.deepEqual(hub.selectDiffusersFiles(files).sort(), ['model_index.json', 'tokenizer/merges.txt', 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'vae/diffusion_pytorch_model.bin']);
    assert.ok(hub.selectDiffusersFiles(files, 'fp16').includes('unet/diffusion_pytorch_model.fp16.safetensors'));
  });

  test('downloads a snapshot into the cache layout, then finds it offline', async () => {
    const progress: number[] = [];
    const snapshot = await hub.resolveModel('test-org/tiny-sd', { cacheDir: cache, endpoint, onProgress: (p) => progress.push(p.received) });
    const repo = join(cache, 'models--test-org--tiny-sd');
    assert.equal(snapshot, join(repo, 'snapshots', COMMIT));
    assert.equal(readFileSync(join(repo, 'refs', 'main'), 'utf8'), COMMIT);
    assert.ok(lstatSync(join(snapshot, 'unet', 'diffusion_pytorch_model.safetensors')).isSymbolicLink());
    assert.ok(!existsSync(join(snapshot, 'unet', 'diffusion_pytorch_model.bin')), 'the .bin twin is not fetched');
    assert.ok(!existsSync(join(snapshot, 'v1-5-pruned.ckpt')));
    assert.ok(progress.length > 0);
    const p = loadPipeline(snapshot);
    assert.equal(p.kind, 'sd');
    disposePipeline(p);
    const before = requests.length;
    process.env.HF_HUB_OFFLINE = '1';
    try {
      assert.equal(await hub.resolveModel('test-org/tiny-sd', { cacheDir: cache, endpoint }), snapshot);
      await assert.rejects(hub.resolveModel('test-org/other', { cacheDir: cache, endpoint }), /not \(completely\) in the Hugging Face cache .*HF_HUB_OFFLINE/);
    } finally {
      delete process.env.HF_HUB_OFFLINE;
    }
    assert.equal(requests.length, before, 'no request while offline');
  });

  test('a partial download resumes with a Range request', async () => {
    const c2 = mkdtempSync(join(tmpdir(), 'dpo-hub-resume-'));
    try {
      const file = join(repoDir, 'unet', 'diffusion_pytorch_model.safetensors');
      const body = readFileSync(file);
      const etag = createHash('sha256').update(body).digest('hex');
      const blobs = join(c2, 'models--test-org--tiny-sd', 'blobs');
      mkdirSync(blobs, { recursive: true });
      writeFileSync(join(blobs, `${etag}.incomplete`), body.subarray(0, 1000));
      const snapshot = await hub.resolveModel('test-org/tiny-sd', { cacheDir: c2, endpoint });
      assert.ok(requests.some((r) => r.range === 'bytes=1000-'));
      assert.deepEqual(readFileSync(join(snapshot, 'unet', 'diffusion_pytorch_model.safetensors')), body);
      assert.equal(statSync(join(blobs, etag)).size, body.length);
    } finally {
      rmSync(c2, { recursive: true, force: true });
    }
  });

  test('gated repos need a token (HF_TOKEN, or the token file of huggingface-cli login), sent as a bearer token', async () => {
    const saved = { HF_TOKEN: process.env.HF_TOKEN, HUGGING_FACE_HUB_TOKEN: process.env.HUGGING_FACE_HUB_TOKEN, HF_TOKEN_PATH: process.env.HF_TOKEN_PATH };
    const tokenFile = join(cache, 'token-file');
    try {
      delete process.env.HF_TOKEN;
      delete process.env.HUGGING_FACE_HUB_TOKEN;
      process.env.HF_TOKEN_PATH = tokenFile;
      await assert.rejects(hub.resolveModel('test-org/private-sd', { cacheDir: cache, endpoint }), /access denied \(HTTP 401\).*HF_TOKEN/);
      const snapshot = await hub.resolveModel('test-org/private-sd', { cacheDir: cache, endpoint, token: 'secret' });
      assert.ok(existsSync(join(snapshot, 'model_index.json')));
      assert.ok(requests.filter((r) => r.url.includes('private-sd')).some((r) => r.auth === 'Bearer secret'));
      // the token file: a fresh cache, so the files are fetched again
      writeFileSync(tokenFile, 'secret\n');
      const from = requests.length;
      await hub.resolveModel('test-org/private-sd', { cacheDir: join(cache, 'second'), endpoint });
      assert.ok(requests.slice(from).every((r) => !r.url.includes('private-sd') || r.auth === 'Bearer secret'));
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  test('an unreachable endpoint is a clear error', async () => {
    await assert.rejects(hub.resolveModel('test-org/nothing', { cacheDir: cache, endpoint: 'http://127.0.0.1:9' }), /cannot reach http:\/\/127\.0\.0\.1:9.*HF_HUB_OFFLINE/);
  });

  test('a Hub dataset id downloads only the requested split into datasets--org--name', async () => {
    const { PreferenceDataset } = await import('../src/data/dataset.js');
    const snapshot = await hub.resolveDataset('test-org/pap', { cacheDir: cache, endpoint, split: 'train' });
    assert.equal(snapshot, join(cache, 'datasets--test-org--pap', 'snapshots', COMMIT));
    assert.ok(existsSync(join(snapshot, 'data', 'train-00000-of-00001.parquet')));
    assert.ok(!existsSync(join(snapshot, 'data', 'validation-00000-of-00001.parquet')));
    const ds = await PreferenceDataset.open(snapshot);
    assert.deepEqual([ds.stats.rowsRead, ds.stats.tiesRemoved], [8, 2]);
  });
});
