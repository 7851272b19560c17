// Downloading a repository snapshot into the Hugging Face cache layout (cache.ts): the file list
// comes from the Hub API at a revision, each file is fetched from /resolve/{commit}/{path} into
// blobs/{etag} (resuming a partial .incomplete file with a Range request), then linked from
// snapshots/{commit}/{path}; refs/{revision} records the commit. HF_TOKEN (or the token file of
// `huggingface-cli login`, token.ts) authenticates;
// HF_ENDPOINT points elsewhere (a mirror, or a test server); HF_HUB_OFFLINE=1 forbids the network.
import { createWriteStream, existsSync, mkdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { hubCacheDir, repoCacheDir, type RepoType } from './cache.js';
import { findHubToken } from './token.js';
import { UserError } from '../util/errors.js';

export class HubError extends UserError {
  constructor(message: string, readonly status?: number) {
    super(message);
    this.name = 'HubError';
  }
}

export interface DownloadProgress {
  file: string;
  received: number;
  total: number | null;
  fileIndex: number;
  fileCount: number;
}

export interface SnapshotOptions {
  revision?: string;
  type?: RepoType;
  cacheDir?: string;
  endpoint?: string;
  token?: string;
  /** Which files of the repo to fetch (default: all). */
  select?: (files: string[]) => string[];
  onProgress?: (p: DownloadProgress) => void;
}

export function hubEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return (env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
}

export function isOffline(env: NodeJS.ProcessEnv = process.env): boolean {
  return ['1', 'ON', 'YES', 'TRUE'].includes((env.HF_HUB_OFFLINE ?? '').toUpperCase());
}

function headers(token: string | undefined, extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { 'user-agent': 'diffusion-dpo', ...extra };
  if (token) h.authorization = `Bearer ${token}`;
  return h;
}

async function hubFetch(url: string, init: RequestInit, what: string): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, redirect: 'follow' });
  } catch (e) {
    throw new HubError(`${what}: cannot reach ${new URL(url).origin} (${(e as Error).cause ?? (e as Error).message}); ` +
      'set HF_HUB_OFFLINE=1 to use only the local cache');
  }
  if (res.status === 401 || res.status === 403) throw new HubError(`${what}: access denied (HTTP ${res.status}); for gated or private repos set HF_TOKEN or run 'huggingface-cli login'`, res.status);
  if (res.status === 404) throw new HubError(`${what}: not found (HTTP 404)`, 404);
  if (!res.ok && res.status !== 206) throw new HubError(`${what}: HTTP ${res.status}`, res.status);
  return res;
}

/** Downloads (the selected files of) a repo at a revision into the cache; returns the snapshot folder. */
export async function snapshotDownload(repoId: string, o: SnapshotOptions = {}): Promise<string> {
  if (isOffline()) throw new HubError(`${repoId} is not in the local cache and HF_HUB_OFFLINE is set`);
  const type = o.type ?? 'model';
  const revision = o.revision ?? 'main';
  const endpoint = (o.endpoint ?? hubEndpoint()).replace(/\/+$/, '');
  const token = o.token ?? findHubToken()?.token;
  const repo = repoCacheDir(repoId, type, o.cacheDir ?? hubCacheDir());
  const apiUrl = `${endpoint}/api/${type}s/${repoId}/revision/${encodeURIComponent(revision)}`;
  const info = (await (await hubFetch(apiUrl, { headers: headers(token) }, `${repoId}@${revision}`)).json()) as { sha?: string; siblings?: { rfilename: string }[] };
  if (!info.sha || !Array.isArray(info.siblings)) throw new HubError(`${repoId}@${revision}: unexpected API answer from ${endpoint}`);
  const commit = info.sha;
  const all = info.siblings.map((s) => s.rfilename);
  const files = o.select ? o.select(all) : all;
  const snapshot = join(repo, 'snapshots', commit);
  const prefix = type === 'model' ? '' : `${type}s/`;
  for (const [i, file] of files.entries()) {
    if (file.split('/').some((part) => part === '..' || part === '')) throw new HubError(`${repoId}: refusing unsafe path '${file}'`);
    const target = join(snapshot, file);
    if (existsSync(target)) continue;
    const url = `${endpoint}/${prefix}${repoId}/resolve/${commit}/${file.split('/').map(encodeURIComponent).join('/')}`;
    const head = await hubFetch(url, { method: 'HEAD', headers: headers(token) }, `${repoId}/${file}`);
    const etag = (head.headers.get('x-linked-etag') ?? head.headers.get('etag') ?? '').replace(/^W\//, '').replace(/"/g, '');
    if (!etag || /[/\\]/.test(etag)) throw new HubError(`${repoId}/${file}: the server sent no usable ETag`);
    const total = Number(head.headers.get('x-linked-size') ?? head.headers.get('content-length') ?? NaN);
    const blob = join(repo, 'blobs', etag);
    if (!existsSync(blob)) {
      mkdirSync(dirname(blob), { recursive: true });
      const partial = `${blob}.incomplete`;
      const have = existsSync(partial) ? statSync(partial).size : 0;
      const res = await hubFetch(url, { headers: headers(token, have > 0 ? { range: `bytes=${have}-` } : {}) }, `${repoId}/${file}`);
      const resumed = res.status === 206;
      if (!resumed && have > 0) rmSync(partial);
      let received = resumed ? have : 0;
      const progress = new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          received += chunk.byteLength;
          o.onProgress?.({ file, received, total: Number.isFinite(total) ? total : null, fileIndex: i, fileCount: files.length });
          controller.enqueue(chunk);
        },
      });
      if (!res.body) throw new HubError(`${repoId}/${file}: empty response`);
      await pipeline(Readable.fromWeb(res.body.pipeThrough(progress) as import('node:stream/web').ReadableStream), createWriteStream(partial, { flags: resumed ? 'a' : 'w' }));
      if (Number.isFinite(total) && statSync(partial).size !== total) {
        throw new HubError(`${repoId}/${file}: download ended at ${statSync(partial).size} of ${total} bytes (run again to resume)`);
      }
      renameSync(partial, blob);
    }
    mkdirSync(dirname(target), { recursive: true });
    symlinkSync(relative(dirname(target), blob), target);
  }
  mkdirSync(join(repo, 'refs'), { recursive: true });
  if (revision !== commit) writeFileSync(join(repo, 'refs', revision), commit);
  mkdirSync(snapshot, { recursive: true });
  return snapshot;
}
