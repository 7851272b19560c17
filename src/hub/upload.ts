// Sending files to a Hub model repo in one commit, with @huggingface/hub: the repo is created when
// missing, the branch when it is not main, then every file goes in a single commit (the large
// files are sent to LFS storage first and the commit references them), so a failure at any point
// leaves no revision with part of the files. Files are read lazily (fs.openAsBlob): a 10 GB UNet
// is streamed, never held in memory.
// LFS transfers are plain ("basic", and "multipart" for large files), not Xet (useXet: false):
// the Hub still accepts them for every repo, and they are the protocol our tests run against a
// local fake Hub; Xet's chunk-and-shard protocol is too large to fake faithfully, and an untested
// upload path is not one to ship.
import { openAsBlob } from 'node:fs';
import { commitIter, createBranch, createRepo, HubApiError, repoExists, type CommitOperation } from '@huggingface/hub';
import { HubError } from './download.js';

export interface UploadEntry {
  /** The path in the repo. */
  path: string;
  /** A local file, or the content itself (the generated README.md). */
  source: { file: string } | { text: string };
}

export type UploadEvent =
  | { event: 'repo'; created: boolean }
  | { event: 'branch'; created: boolean }
  | { event: 'phase'; phase: 'preuploading' | 'uploadingLargeFiles' | 'committing' }
  | { event: 'file'; path: string; state: 'hashing' | 'uploading'; progress: number };

export interface UploadOptions {
  repoId: string;
  revision: string;
  private: boolean;
  commitMessage: string;
  token: string;
  endpoint: string;
  onEvent?: (e: UploadEvent) => void;
}

export interface UploadResult {
  /** The new commit's hash and URL, as the Hub answered. */
  commit: string;
  url: string;
  /** The repo did not exist and was created (private with --private, else as its namespace's default). */
  repoCreated: boolean;
}

function statusOf(e: unknown): number | undefined {
  return e instanceof HubApiError ? e.statusCode : undefined;
}

/** The library's message without its trailing "URL: ..." (we name the repo ourselves). */
function reason(e: unknown, endpoint: string): string {
  if (e instanceof HubApiError) return `HTTP ${e.statusCode}: ${e.message.replace(/\.?\s*URL: \S+(\. Request ID: \S+)?$/, '')}`;
  const cause = (e as Error).cause as Error | undefined;
  return `cannot reach ${endpoint} (${cause?.message ?? (e as Error).message})`;
}

export async function uploadToHub(entries: UploadEntry[], o: UploadOptions): Promise<UploadResult> {
  const repo = { type: 'model' as const, name: o.repoId };
  const hubError = (what: string, e: unknown, after = ''): HubError => {
    const status = statusOf(e);
    const auth = status === 401 || status === 403 ? ' (check that the token has write access to the repo)' : '';
    return new HubError(`${what}: ${reason(e, o.endpoint)}${auth}${after}`, status);
  };
  const common = { hubUrl: o.endpoint, accessToken: o.token };
  let repoCreated = false;
  try {
    // without --private the namespace's default applies (an Enterprise org may make new repos private)
    await createRepo({ ...common, repo, ...(o.private ? { visibility: 'private' as const } : {}) });
    repoCreated = true;
  } catch (e) {
    // 409: it exists already, which is fine (its visibility is left as it is); 403: a token
    // that may write to this repo but not create repos in its namespace (a fine-grained one),
    // fine too when the repo exists (as huggingface_hub's create_repo(exist_ok=True) decides)
    const status = statusOf(e);
    const exists = status === 409 || (status === 403 && await repoExists({ ...common, repo }).catch(() => false));
    if (!exists) throw hubError(`cannot create the repo ${o.repoId}`, e);
  }
  o.onEvent?.({ event: 'repo', created: repoCreated });
  if (o.revision !== 'main') {
    let created = false;
    try {
      await createBranch({ ...common, repo, branch: o.revision });
      created = true;
    } catch (e) {
      if (statusOf(e) !== 409) throw hubError(`cannot create the branch ${o.revision} of ${o.repoId}`, e);
    }
    o.onEvent?.({ event: 'branch', created });
  }
  const operations: CommitOperation[] = await Promise.all(entries.map(async (e) => ({
    operation: 'addOrUpdate' as const,
    path: e.path,
    content: 'file' in e.source ? await openAsBlob(e.source.file) : new Blob([e.source.text]),
  })));
  const untouched = repoCreated ? ` (the repo ${o.repoId} was created, with no commit of these files)` : ` (${o.repoId}@${o.revision} is unchanged)`;
  try {
    const it = commitIter({ ...common, repo, operations, title: o.commitMessage, branch: o.revision, useXet: false });
    for (;;) {
      const r = await it.next();
      if (r.done) {
        if (!r.value) throw new HubError(`commit to ${o.repoId}@${o.revision}: the Hub sent no commit`);
        return { commit: r.value.commit.oid, url: r.value.commit.url, repoCreated };
      }
      const v = r.value;
      if (v.event === 'phase') o.onEvent?.(v);
      else if (v.state === 'error') throw new HubError(`commit to ${o.repoId}@${o.revision}: ${v.path} failed to upload; nothing was committed${untouched}`);
      else o.onEvent?.({ event: 'file', path: v.path, state: v.state, progress: v.progress });
    }
  } catch (e) {
    if (e instanceof HubError) throw e;
    throw hubError(`upload to ${o.repoId}@${o.revision} failed`, e, `; nothing was committed${untouched}`);
  }
}
