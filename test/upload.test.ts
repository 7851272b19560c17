// `diffusion-dpo upload` against a local fake Hub (never the network). The fake implements what
// @huggingface/hub calls for an upload without Xet: POST /api/repos/create, POST
// /api/models/{repo}/branch/{branch}, POST /api/models/{repo}/preupload/{rev}, the LFS batch
// endpoint /{repo}.git/info/lfs/objects/batch (basic transfers, and multipart ones for large
// files: PUT per part, then POST to the completion URL), and POST /api/models/{repo}/commit/{rev}
// with NDJSON. It checks every LFS object against its sha256 and records what it receives; the
// tests assert one commit per upload, its files and their bytes, the card, and the token sent.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { writeTinyPipeline, writeWarmPreferenceSet } from './helpers/tiny_pipeline.js';
import { runCli, runTrain } from './helpers/train_cli.js';

const TOKEN = 'hf_test_token';
/** A token that may write to existing repos but not create any (the fake answers 403 to create). */
const FINE_GRAINED = 'hf_fine_grained';
/** Files above this size are sent as multipart LFS uploads, in parts of PART bytes. */
const MULTIPART_OVER = 1_000_000;
const PART = 400_000;

interface Request {
  method: string;
  path: string;
  auth: string | undefined;
  body: Buffer;
}

interface Commit {
  repo: string;
  revision: string;
  summary: string;
  files: Map<string, Buffer>;
}

interface Repo {
  visibility: string | undefined;
  branches: Set<string>;
}

const requests: Request[] = [];
const commits: Commit[] = [];
const repos = new Map<string, Repo>();
/** LFS storage: objects by sha256, and multipart parts by oid. */
const lfs = new Map<string, Buffer>();
const parts = new Map<string, Map<number, Buffer>>();
let failCommits = false;
let server: Server;
let endpoint = '';
const tmp = mkdtempSync(join(tmpdir(), 'dpo-upload-'));

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function body(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function json(res: import('node:http').ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(value));
}

async function handle(req: IncomingMessage, res: import('node:http').ServerResponse): Promise<void> {
  const url = new URL(req.url!, 'http://x');
  const path = decodeURIComponent(url.pathname);
  const data = await body(req);
  requests.push({ method: req.method!, path, auth: req.headers.authorization, body: data });
  const authorized = [TOKEN, 'hf_from_file', FINE_GRAINED].some((t) => req.headers.authorization === `Bearer ${t}`);
  let m: RegExpMatchArray | null;
  // the API needs the token; LFS storage URLs are pre-signed (the client sends none there)
  if ((path.startsWith('/api/') || path.includes('.git/')) && !authorized) return json(res, 401, { error: 'Invalid credentials in Authorization header' });
  if (req.method === 'POST' && path === '/api/repos/create') {
    if (req.headers.authorization === `Bearer ${FINE_GRAINED}`) return json(res, 403, { error: 'You don\'t have the rights to create a model under the namespace "test-org"' });
    const b = JSON.parse(data.toString()) as { name: string; organization: string; type: string; visibility?: string };
    const id = `${b.organization}/${b.name}`;
    if (b.type !== 'model') return json(res, 400, { error: `unexpected repo type ${b.type}` });
    if (repos.has(id)) return json(res, 409, { error: 'You already created this model repo', url: `${endpoint}/${id}` });
    repos.set(id, { visibility: b.visibility, branches: new Set(['main']) });
    return json(res, 200, { url: `${endpoint}/${id}`, name: id });
  }
  if (req.method === 'GET' && (m = path.match(/^\/api\/models\/([^/]+\/[^/]+)$/))) {
    return repos.has(m[1]!) ? json(res, 200, { id: m[1] }) : json(res, 404, { error: 'Repository not found' });
  }
  if (req.method === 'POST' && (m = path.match(/^\/api\/models\/([^/]+\/[^/]+)\/branch\/(.+)$/))) {
    const repo = repos.get(m[1]!);
    if (!repo) return json(res, 404, { error: 'Repository not found' });
    if (repo.branches.has(m[2]!)) return json(res, 409, { error: 'Reference already exists' });
    repo.branches.add(m[2]!);
    return json(res, 200, {});
  }
  if (req.method === 'POST' && (m = path.match(/^\/api\/models\/([^/]+\/[^/]+)\/preupload\/(.+)$/))) {
    if (!repos.get(m[1]!)?.branches.has(m[2]!)) return json(res, 404, { error: 'Invalid rev id' });
    const b = JSON.parse(data.toString()) as { files: { path: string; size: number; sample: string }[] };
    // as the Hub: weights (and anything large) go to LFS, small text files in the commit itself
    const files = b.files.map((f) => ({ path: f.path, uploadMode: /\.(safetensors|bin)$/.test(f.path) || f.size > 10_000_000 ? 'lfs' : 'regular', shouldIgnore: false }));
    return json(res, 200, { files });
  }
  if (req.method === 'POST' && (m = path.match(/^\/([^/]+\/[^/]+)\.git\/info\/lfs\/objects\/batch$/))) {
    const b = JSON.parse(data.toString()) as { operation: string; transfers: string[]; objects: { oid: string; size: number }[] };
    const objects = b.objects.map((o) => {
      if (lfs.has(o.oid)) return { oid: o.oid, size: o.size }; // already stored: no upload action
      if (o.size <= MULTIPART_OVER) return { oid: o.oid, size: o.size, actions: { upload: { href: `${endpoint}/storage/${o.oid}` } } };
      const header: Record<string, string> = { chunk_size: String(PART) };
      for (let i = 1; i <= Math.ceil(o.size / PART); i++) header[String(i).padStart(5, '0')] = `${endpoint}/storage/${o.oid}/part/${i}`;
      return { oid: o.oid, size: o.size, actions: { upload: { href: `${endpoint}/storage/${o.oid}/complete`, header } } };
    });
    // the client offers xet too; this server (like a Hub without Xet) answers basic
    return json(res, 200, { transfer: 'basic', objects }, { 'content-type': 'application/vnd.git-lfs+json' });
  }
  if (req.method === 'PUT' && (m = path.match(/^\/storage\/([0-9a-f]{64})\/part\/(\d+)$/))) {
    const p = parts.get(m[1]!) ?? new Map<number, Buffer>();
    p.set(Number(m[2]), data);
    parts.set(m[1]!, p);
    res.writeHead(200, { etag: `"${sha256(data)}"` }).end();
    return;
  }
  if (req.method === 'POST' && (m = path.match(/^\/storage\/([0-9a-f]{64})\/complete$/))) {
    const b = JSON.parse(data.toString()) as { oid: string; parts: { partNumber: number; etag: string }[] };
    const got = parts.get(m[1]!);
    const whole = Buffer.concat(b.parts.map((p) => got?.get(p.partNumber) ?? Buffer.alloc(0)));
    if (b.oid !== m[1] || sha256(whole) !== m[1]) return json(res, 400, { error: 'multipart: the parts do not hash to the oid' });
    lfs.set(m[1]!, whole);
    return json(res, 200, {});
  }
  if (req.method === 'PUT' && (m = path.match(/^\/storage\/([0-9a-f]{64})$/))) {
    if (sha256(data) !== m[1]) return json(res, 400, { error: 'content does not hash to the oid' });
    lfs.set(m[1]!, data);
    res.writeHead(200).end();
    return;
  }
  if (req.method === 'POST' && (m = path.match(/^\/api\/models\/([^/]+\/[^/]+)\/commit\/(.+)$/))) {
    if (failCommits) return json(res, 500, { error: 'Internal Error - We\'re working hard to fix this as soon as possible!' });
    if (!repos.get(m[1]!)?.branches.has(m[2]!)) return json(res, 404, { error: 'Invalid rev id' });
    const lines = data.toString().trim().split('\n').map((l) => JSON.parse(l) as { key: string; value: Record<string, string> });
    const files = new Map<string, Buffer>();
    for (const { key, value } of lines.slice(1)) {
      if (key === 'file') files.set(value.path!, Buffer.from(value.content!, 'base64'));
      else if (key === 'lfsFile') {
        const blob = lfs.get(value.oid!);
        if (!blob) return json(res, 422, { error: `LFS object ${value.oid} of ${value.path} was never uploaded` });
        files.set(value.path!, blob);
      } else return json(res, 400, { error: `unexpected operation ${key}` });
    }
    assert.equal(lines[0]!.key, 'header');
    commits.push({ repo: m[1]!, revision: m[2]!, summary: lines[0]!.value.summary!, files });
    const oid = sha256(data).slice(0, 40);
    return json(res, 200, { commitOid: oid, commitUrl: `${endpoint}/${m[1]}/commit/${oid}`, success: true });
  }
  json(res, 404, { error: `fake Hub: no route for ${req.method} ${path}` });
}

before(async () => {
  server = createServer((req, res) => {
    handle(req, res).catch((e: Error) => json(res, 500, { error: e.message }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
after(() => {
  server.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** Runs `diffusion-dpo upload` with the fake Hub and a token (override env to change either). */
function upload(args: string[], env: Record<string, string> = {}) {
  return runCli(['upload', ...args], { env: { HF_ENDPOINT: endpoint, HF_TOKEN: TOKEN, HF_TOKEN_PATH: '', HF_HOME: join(tmp, 'hf-home'), ...env } });
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile())
    .map((d) => relative(dir, join(d.parentPath ?? (d as unknown as { path: string }).path, d.name)).split('\\').join('/')).sort();
}

/** Requests to the repo's API since `from` (index into requests). */
function apiCalls(from: number, repo: string): string[] {
  return requests.slice(from).filter((r) => r.path.includes(repo) || r.path === '/api/repos/create').map((r) => `${r.method} ${r.path.replace(/[0-9a-f]{64}/, '<oid>')}`);
}

const RUN = {
  train_batch_size: 2, gradient_accumulation_steps: 3, world_size: 1, method: 'dpo', loss_type: 'hinge', lora: null, resolution: 64, seed: 0,
  learning_rate: 2e-6, lr_scheduler: 'constant', lr_warmup_steps: 0, optimizer: 'adamw',
  dataset: { source: '/home/alice/.cache/huggingface/hub/datasets--yuvalkirstain--pickapic_v2/snapshots/0123abc/', split: 'train', rows_read: 10, kept: 8, max_train_samples: null, dreamlike_pairs_only: false },
};

/** A training output_dir: the tiny pipeline, with what train writes beside it. */
function trainingOutput(dir: string): void {
  writeTinyPipeline(dir, 0);
  mkdirSync(join(dir, 'logs', 'tuning'), { recursive: true });
  writeFileSync(join(dir, 'logs', 'tuning', 'metrics.jsonl'), [1, 2, 7].map((step) => JSON.stringify({ step, train_loss: 0.69, lr: 2e-6 })).join('\n') + '\n');
  writeFileSync(join(dir, 'logs', 'tuning', 'events.out.tfevents.1.host'), 'tb');
  for (const step of [4, 6]) {
    mkdirSync(join(dir, `checkpoint-${step}`, 'unet'), { recursive: true });
    cpSync(join(dir, 'unet'), join(dir, `checkpoint-${step}`, 'unet'), { recursive: true });
    writeFileSync(join(dir, `checkpoint-${step}`, 'optimizer.json'), '{}');
    writeFileSync(join(dir, `checkpoint-${step}`, 'trainer_state.json'), JSON.stringify({ version: 2, globalStep: step, run: RUN }));
  }
  writeFileSync(join(dir, 'bad_rows.jsonl'), '{"id":"3"}\n');
  writeFileSync(join(dir, 'report.html'), '<!doctype html><title>report</title>');
  writeFileSync(join(dir, 'eval.json'), JSON.stringify({ pickscore: 21.5, win_rate: { vs_base: 0.625, vs_sft: 0.5 }, note: 'not a number', prompts: [1, 2] }));
  writeFileSync(join(dir, `.model_index.json.tmp-${process.pid}-1`), 'partial');
  mkdirSync(join(dir, '.checkpoint-8.tmp-123'), { recursive: true });
  writeFileSync(join(dir, '.checkpoint-8.tmp-123', 'trainer_state.json'), '{}');
}

const SDXL_TO_K = 'unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora';
const ABOUT = {
  base_model: 'stabilityai/stable-diffusion-xl-base-1.0', unet_init: null, objective: 'sigmoid', beta_dpo: 5000, steps: 2000, effective_batch: 2048,
  learning_rate: 1e-8, resolution: 1024, dataset: 'yuvalkirstain/pickapic_v2',
  lora: { rank: 4, alpha: 4, targets: ['to_q', 'to_k', 'to_v', 'to_out.0'], init: 'gaussian', alpha_folded: true },
};

/** A LoRA file shaped like an SDXL one (attn2's key projection reads 2048-wide text states), with our metadata. */
function writeLora(path: string, about: object | null = ABOUT): void {
  torch.tidy(() => {
    const tensors = new Map([
      [`${SDXL_TO_K}.down.weight`, torch.randn([4, 2048])],
      [`${SDXL_TO_K}.up.weight`, torch.zeros([640, 4])],
    ]);
    torch.saveSafetensors(path, tensors, about ? { format: 'pt', diffusion_dpo: JSON.stringify(about) } : { format: 'pt' });
  });
}

function parseOut(out: string): { commit: string; files: string[]; kind: string; repo_created: boolean; left_out: string[] } {
  return JSON.parse(out) as { commit: string; files: string[]; kind: string; repo_created: boolean; left_out: string[] };
}

describe('diffusion-dpo upload', () => {
  test('a training output with a pipeline: one commit of the pipeline, report.html, eval.json and a generated card', async () => {
    const dir = join(tmp, 'pipeline-run');
    trainingOutput(dir);
    const from = requests.length;
    const r = await upload(['--repo_id', 'test-org/dpo-pipeline', '--private', '--base_model', 'runwayml/stable-diffusion-v1-5', dir]);
    assert.equal(r.code, 0, r.err);
    assert.equal(parseOut(r.out).kind, 'pipeline');
    // the calls, in order: create, preupload, LFS batch, uploads, commit
    const calls = apiCalls(from, 'test-org/dpo-pipeline');
    assert.deepEqual(calls.filter((c) => c.startsWith('POST /api/')), [
      'POST /api/repos/create', 'POST /api/models/test-org/dpo-pipeline/preupload/main', 'POST /api/models/test-org/dpo-pipeline/commit/main',
    ]);
    assert.ok(calls.includes('POST /test-org/dpo-pipeline.git/info/lfs/objects/batch'));
    const mine = commits.filter((c) => c.repo === 'test-org/dpo-pipeline');
    assert.equal(mine.length, 1, 'one commit');
    const c = mine[0]!;
    const expected = [...filesUnder(dir).filter((f) => !/^(checkpoint-|logs\/|bad_rows|\.)/.test(f)), 'README.md'].sort();
    assert.deepEqual([...c.files.keys()].sort(), expected);
    assert.ok(expected.includes('report.html') && expected.includes('eval.json') && expected.includes('unet/diffusion_pytorch_model.safetensors'));
    for (const f of expected) if (f !== 'README.md') assert.deepEqual(c.files.get(f), readFileSync(join(dir, f)), f);
    assert.equal(c.summary, 'Upload pipeline trained with diffusion-dpo');
    assert.equal(repos.get('test-org/dpo-pipeline')!.visibility, 'private');
    // the UNet (over 1 MB) went as a multipart LFS upload
    assert.ok(requests.slice(from).some((q) => q.method === 'PUT' && q.path.includes('/part/2')));
    // every API call carried the token; the storage URLs got none
    for (const q of requests.slice(from)) {
      if (q.path.startsWith('/api/') || q.path.includes('.git/')) assert.equal(q.auth, `Bearer ${TOKEN}`, q.path);
      else assert.equal(q.auth, undefined, q.path);
    }
    const card = c.files.get('README.md')!.toString();
    assert.match(card, /^---\nbase_model: runwayml\/stable-diffusion-v1-5\ndatasets:\n {2}- yuvalkirstain\/pickapic_v2\ntags:\n {2}- diffusion-dpo\n {2}- text-to-image\n {2}- stable-diffusion\nlibrary_name: diffusers\n---\n/);
    assert.doesNotMatch(card, /^license:/m, 'a tiny SD of unknown version has no default license');
    assert.doesNotMatch(card, /alice/, 'no local path in the card');
    assert.match(card, /\| steps \(optimizer updates\) \| 7 \|/, 'the last metrics row');
    assert.match(card, /\| effective batch [^|]*\| 6 \|/);
    assert.match(card, /\| learning rate \| 2e-6 \|/);
    assert.match(card, /\| resolution \| 64 px \|/);
    assert.match(card, /\| objective \| Diffusion-DPO with a hinge loss \|/);
    assert.match(card, /\| β \(beta_dpo\) \| unknown \|/);
    assert.match(card, /\| pickscore \| 21\.5 \|\n\| win_rate\.vs_base \| 0\.625 \|\n\| win_rate\.vs_sft \| 0\.5 \|\n/);
    assert.match(card, /DiffusionPipeline\.from_pretrained\("test-org\/dpo-pipeline", torch_dtype=torch\.float16\)/);
    assert.match(card, /\[report\.html\]\(report\.html\)/);
    // what was left out is said
    assert.match(r.err, /left out: checkpoint-4\/ \(training checkpoint\)/);
    assert.match(r.err, /left out: logs\/ \(training logs\)/);
    assert.match(r.err, /left out: bad_rows\.jsonl/);
    assert.match(r.err, /left out: \.checkpoint-8\.tmp-123\/ \(hidden or temporary\)/);
    assert.match(r.err, /created private repo test-org\/dpo-pipeline/);
  });

  test('a finished training run describes itself in training_run.json: the card takes β, the objective and the batch from it', async () => {
    const model = join(tmp, 'run-model');
    writeTinyPipeline(model, 1);
    const data = await writeWarmPreferenceSet(join(tmp, 'run-data'), 4, 16, 3);
    const out = join(tmp, 'run-out');
    const t = await runTrain(['--pretrained_model_name_or_path', model, '--dataset_name', data, '--output_dir', out, '--resolution', '16',
      '--train_batch_size', '2', '--gradient_accumulation_steps', '2', '--max_train_steps', '1', '--learning_rate', '1e-5', '--lr_warmup_steps', '0',
      '--mixed_precision', 'no', '--seed', '1', '--loss_type', 'ipo', '--beta_dpo', '250']);
    assert.equal(t.code, 0, t.err);
    const run = JSON.parse(readFileSync(join(out, 'training_run.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(run.objective, 'ipo');
    const r = await upload(['--repo_id', 'test-org/described', out]);
    assert.equal(r.code, 0, r.err);
    const card = commits.filter((c) => c.repo === 'test-org/described')[0]!.files.get('README.md')!.toString();
    assert.match(card, /\| β \(beta_dpo\) \| 250 \|/);
    assert.match(card, /\| effective batch [^|]*\| 4 \|/);
    assert.match(card, /\| steps \(optimizer updates\) \| 1 \|/);
    assert.match(card, /IPO/);
  });

  test('a UNet checkpoint folder to a new branch: unet/ only, the optimizer and trainer state left out', async () => {
    const dir = join(tmp, 'pipeline-run', 'checkpoint-6');
    const r = await upload(['--repo_id', 'test-org/dpo-unet', '--revision', 'dpo', dir]);
    assert.equal(r.code, 0, r.err);
    assert.equal(parseOut(r.out).kind, 'unet');
    assert.ok(requests.some((q) => q.method === 'POST' && q.path === '/api/models/test-org/dpo-unet/branch/dpo'));
    const mine = commits.filter((c) => c.repo === 'test-org/dpo-unet');
    assert.equal(mine.length, 1);
    assert.equal(mine[0]!.revision, 'dpo');
    assert.deepEqual([...mine[0]!.files.keys()].sort(), ['README.md', 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors']);
    const card = mine[0]!.files.get('README.md')!.toString();
    assert.match(card, /UNet2DConditionModel\.from_pretrained\("test-org\/dpo-unet", subfolder="unet", torch_dtype=torch\.float16, revision="dpo"\)/);
    assert.match(card, /DiffusionPipeline\.from_pretrained\("BASE_MODEL", unet=unet/);
    assert.match(card, /\| steps \(optimizer updates\) \| 6 \|/, 'the checkpoint\'s own step');
    assert.match(card, /\| base model \| unknown \|/);
    assert.match(r.err, /left out: optimizer\.json/);
    assert.match(r.err, /left out: trainer_state\.json/);
  });

  test('a LoRA output folder: the weights, the card from the file\'s metadata, and a second upload to the existing repo', async () => {
    const dir = join(tmp, 'lora-run');
    mkdirSync(join(dir, 'checkpoint-2'), { recursive: true });
    writeFileSync(join(dir, 'checkpoint-2', 'lora_adapters.safetensors'), 'x');
    writeLora(join(dir, 'pytorch_lora_weights.safetensors'));
    const r = await upload(['--repo_id', 'test-org/dpo-lora', dir]);
    assert.equal(r.code, 0, r.err);
    const mine = commits.filter((c) => c.repo === 'test-org/dpo-lora');
    assert.equal(mine.length, 1);
    assert.deepEqual([...mine[0]!.files.keys()].sort(), ['README.md', 'pytorch_lora_weights.safetensors']);
    assert.deepEqual(mine[0]!.files.get('pytorch_lora_weights.safetensors'), readFileSync(join(dir, 'pytorch_lora_weights.safetensors')));
    const card = mine[0]!.files.get('README.md')!.toString();
    assert.match(card, /^---\nlicense: openrail\+\+\nbase_model: stabilityai\/stable-diffusion-xl-base-1\.0\ndatasets:\n {2}- yuvalkirstain\/pickapic_v2\ntags:\n {2}- diffusion-dpo\n {2}- text-to-image\n {2}- stable-diffusion-xl\n {2}- lora\nlibrary_name: diffusers\n---/);
    assert.match(card, /\| β \(beta_dpo\) \| 5000 \|/);
    assert.match(card, /\| steps \(optimizer updates\) \| 2000 \|/);
    assert.match(card, /\| effective batch [^|]*\| 2048 \|/);
    assert.match(card, /\| learning rate \| 1e-8 \|/);
    assert.match(card, /\| LoRA rank \| 4 \|/);
    assert.match(card, /\| LoRA targets \| to_q, to_k, to_v, to_out\.0 \|/);
    assert.match(card, /pipe = DiffusionPipeline\.from_pretrained\("stabilityai\/stable-diffusion-xl-base-1\.0", torch_dtype=torch\.float16\)\.to\("cuda"\)\npipe\.load_lora_weights\("test-org\/dpo-lora"\)/);
    assert.doesNotMatch(card, /## Evaluation/, 'no eval.json: no section');
    // again, into the repo that now exists: a 409 on create is fine, --private cannot change it
    const again = await upload(['--repo_id', 'test-org/dpo-lora', '--private', '--commit_message', 'second', dir]);
    assert.equal(again.code, 0, again.err);
    assert.equal(parseOut(again.out).repo_created, false);
    assert.equal(repos.get('test-org/dpo-lora')!.visibility, undefined, 'no --private: the namespace default');
    assert.match(again.err, /test-org\/dpo-lora exists \(--private applies to a new repo only/);
    // a token that cannot create repos: 403 on create, then the repo is found to exist
    const fine = await upload(['--repo_id', 'test-org/dpo-lora', dir], { HF_TOKEN: FINE_GRAINED });
    assert.equal(fine.code, 0, fine.err);
    const after = commits.filter((c) => c.repo === 'test-org/dpo-lora');
    assert.equal(after.length, 3);
    assert.equal(after[1]!.summary, 'second');
    const denied = await upload(['--repo_id', 'test-org/not-there', dir], { HF_TOKEN: FINE_GRAINED });
    assert.equal(denied.code, 1);
    assert.match(denied.err, /cannot create the repo test-org\/not-there: HTTP 403: You don't have the rights .*\(check that the token has write access to the repo\)/);
  });

  test('a LoRA file by itself: uploaded under its own name, the card names it', async () => {
    const file = join(tmp, 'my_dpo_lora.safetensors');
    writeLora(file, null);
    const r = await upload(['--repo_id', 'test-org/lora-file', '--license', 'other', file]);
    assert.equal(r.code, 0, r.err);
    const c = commits.find((x) => x.repo === 'test-org/lora-file')!;
    assert.deepEqual([...c.files.keys()].sort(), ['README.md', 'my_dpo_lora.safetensors']);
    const card = c.files.get('README.md')!.toString();
    assert.match(card, /^---\nlicense: other\ntags:/, 'no metadata: no base model; --license wins');
    assert.match(card, /\| objective \| unknown \|/);
    assert.match(card, /pipe\.load_lora_weights\("test-org\/lora-file", weight_name="my_dpo_lora\.safetensors"\)/);
  });

  test('the folder\'s own README.md is uploaded as it is, and card flags are refused beside it', async () => {
    const dir = join(tmp, 'lora-with-readme');
    mkdirSync(dir, { recursive: true });
    writeLora(join(dir, 'pytorch_lora_weights.safetensors'));
    writeFileSync(join(dir, 'README.md'), '# my own card\n');
    const refused = await upload(['--repo_id', 'test-org/own-card', '--license', 'mit', dir]);
    assert.equal(refused.code, 2);
    assert.match(refused.err, /--license shapes the generated model card, but .*README\.md is uploaded as the card instead/);
    const r = await upload(['--repo_id', 'test-org/own-card', dir]);
    assert.equal(r.code, 0, r.err);
    const c = commits.find((x) => x.repo === 'test-org/own-card')!;
    assert.equal(c.files.get('README.md')!.toString(), '# my own card\n');
    assert.match(r.out, /"model_card": "README\.md of the folder"/);
  });

  test('the token: none is an error before any request; the token file is read', async () => {
    const home = join(tmp, 'empty-home');
    mkdirSync(home, { recursive: true });
    const from = requests.length;
    const r = await upload(['--repo_id', 'test-org/no-token', join(tmp, 'lora-run')], { HF_TOKEN: '', HUGGING_FACE_HUB_TOKEN: '', HF_HOME: home });
    assert.equal(r.code, 1);
    assert.match(r.err, /no Hugging Face token: set HF_TOKEN, or run 'huggingface-cli login' \(looked in .*empty-home\/token\)/);
    assert.equal(requests.length, from, 'no request');
    writeFileSync(join(home, 'token'), 'hf_from_file\n');
    const ok = await upload(['--repo_id', 'test-org/token-file', join(tmp, 'lora-run')], { HF_TOKEN: '', HUGGING_FACE_HUB_TOKEN: '', HF_HOME: home });
    assert.equal(ok.code, 0, ok.err);
    assert.ok(requests.slice(from).every((q) => !q.path.startsWith('/api/') || q.auth === 'Bearer hf_from_file'));
    const bad = await upload(['--repo_id', 'test-org/token-file', join(tmp, 'lora-run')], { HF_TOKEN: 'not-a-token' });
    assert.equal(bad.code, 1);
    assert.match(bad.err, /the Hugging Face token from HF_TOKEN does not start with 'hf_'/);
  });

  test('a folder of another kind is an error naming the folder and what was expected', async () => {
    const dir = join(tmp, 'not-a-model');
    mkdirSync(join(dir, 'checkpoint-3'), { recursive: true });
    writeFileSync(join(dir, 'notes.txt'), 'hello');
    const from = requests.length;
    const r = await upload(['--repo_id', 'test-org/wrong', dir]);
    assert.equal(r.code, 1);
    assert.match(r.err, new RegExp(`${dir.replace(/[/.]/g, '\\$&')} is none of what upload sends: expected a pipeline \\(model_index\\.json\\), a UNet .* or a LoRA .*training checkpoints but no final result`));
    assert.equal(requests.length, from, 'no request');
    const usage = await upload(['--repo_id', 'no-owner', dir]);
    assert.equal(usage.code, 2);
    assert.match(usage.err, /--repo_id no-owner: give the owner too/);
  });

  test('a failed commit reports the HTTP status and claims nothing', async () => {
    failCommits = true;
    try {
      const r = await upload(['--repo_id', 'test-org/fails', join(tmp, 'lora-run')]);
      assert.equal(r.code, 1);
      assert.match(r.err, /upload to test-org\/fails@main failed: HTTP 500: Internal Error.*; nothing was committed \(the repo test-org\/fails was created, with no commit of these files\)/);
      assert.equal(r.out, '', 'no result printed');
      assert.equal(commits.filter((c) => c.repo === 'test-org/fails').length, 0);
    } finally {
      failCommits = false;
    }
  });
});
