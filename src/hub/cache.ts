// The Hugging Face cache layout (huggingface_hub's), so that models Python users already
// downloaded are found offline and what we download is found by them:
//   $HF_HUB_CACHE (default $HF_HOME/hub, default ~/.cache/huggingface/hub)
//     models--{org}--{name}/
//       refs/{revision}            -> the commit hash a branch or tag points to
//       blobs/{etag}               -> file contents
//       snapshots/{commit}/{path}  -> symlinks into blobs
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';

export type RepoType = 'model' | 'dataset';

export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
  return join(home, 'hub');
}

const REPO_ID = /^[A-Za-z0-9][\w.-]*(\/[\w.-]+)?$/;

export function checkRepoId(repoId: string): void {
  if (!REPO_ID.test(repoId) || repoId.includes('--') || repoId.includes('..')) {
    throw new UserError(`'${repoId}' is not a valid Hugging Face repo id (expected 'org/name')`);
  }
}

export function repoFolderName(repoId: string, type: RepoType = 'model'): string {
  return `${type}s--${repoId.replace(/\//g, '--')}`;
}

export function repoCacheDir(repoId: string, type: RepoType = 'model', cacheDir = hubCacheDir()): string {
  checkRepoId(repoId);
  return join(cacheDir, repoFolderName(repoId, type));
}

const COMMIT = /^[0-9a-f]{40}$/;

/** The cached snapshot folder of repoId at revision (branch, tag or commit), or undefined. */
export function cachedSnapshot(repoId: string, o: { revision?: string; type?: RepoType; cacheDir?: string } = {}): string | undefined {
  const repo = repoCacheDir(repoId, o.type, o.cacheDir);
  const revision = o.revision ?? 'main';
  let commit = revision;
  if (!COMMIT.test(revision)) {
    const ref = join(repo, 'refs', revision);
    if (!existsSync(ref)) return undefined;
    commit = readFileSync(ref, 'utf8').trim();
  }
  const snapshot = join(repo, 'snapshots', commit);
  return existsSync(snapshot) ? snapshot : undefined;
}
