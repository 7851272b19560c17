// From what a user types (`runwayml/stable-diffusion-v1-5`, a folder, a checkpoint dir) to a local
// folder: a local path as it is; a Hub id from the cache when its snapshot is complete; otherwise
// downloaded (only what diffusers would load: configs, tokenizer files, one weight format per
// component) unless HF_HUB_OFFLINE forbids it.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cachedSnapshot, checkRepoId, hubCacheDir, repoCacheDir } from './cache.js';
import { HubError, isOffline, snapshotDownload, type DownloadProgress } from './download.js';
import { stderrProgress } from './progress.js';

const WEIGHT = /^(diffusion_pytorch_model|model|pytorch_model)(\.([A-Za-z0-9_]+))?(-\d{5}-of-\d{5})?\.(safetensors|bin)$/;

/** The files of a diffusers repo worth fetching: configs and tokenizer files, and per folder one weight set. */
export function selectDiffusersFiles(files: string[], variant?: string): string[] {
  const keep = files.filter((f) => /\.(json|txt)$/.test(f) && !/\.(safetensors|bin)\.index(\.[\w]+)?\.json$/.test(f));
  const byFolder = new Map<string, { file: string; variant: string | undefined; ext: string }[]>();
  for (const f of files) {
    const slash = f.lastIndexOf('/');
    const m = f.slice(slash + 1).match(WEIGHT);
    if (!m) continue;
    const folder = f.slice(0, Math.max(slash, 0));
    const list = byFolder.get(folder) ?? [];
    list.push({ file: f, variant: m[3], ext: m[5]! });
    byFolder.set(folder, list);
  }
  for (const [folder, list] of byFolder) {
    const pick = (v: string | undefined, ext: string) => list.filter((w) => w.variant === v && w.ext === ext);
    const chosen = [...(variant ? [pick(variant, 'safetensors'), pick(variant, 'bin')] : []), pick(undefined, 'safetensors'), pick(undefined, 'bin')]
      .find((g) => g.length > 0);
    if (!chosen) continue;
    keep.push(...chosen.map((w) => w.file));
    // the shard index that lists the chosen shards
    const index = files.find((f) => f.startsWith(folder ? `${folder}/` : '') && f.endsWith(`.${chosen[0]!.ext}.index${variant && chosen[0]!.variant ? `.${variant}` : ''}.json`));
    if (index) keep.push(index);
  }
  return [...new Set(keep)];
}

function hasWeights(folder: string): boolean {
  return existsSync(folder) && readdirSync(folder).some((n) => WEIGHT.test(n));
}

/** Whether a snapshot holds what loading needs: every model component's config and weights. */
export function isCompleteSnapshot(folder: string): boolean {
  const index = join(folder, 'model_index.json');
  if (existsSync(index)) {
    const spec = JSON.parse(readFileSync(index, 'utf8')) as Record<string, unknown>;
    for (const [name, value] of Object.entries(spec)) {
      if (!Array.isArray(value) || value[0] === null) continue;
      const dir = join(folder, name);
      if (/unet|vae|text_encoder/.test(name) && (!existsSync(join(dir, 'config.json')) || !hasWeights(dir))) return false;
    }
    return true;
  }
  return existsSync(join(folder, 'config.json')) && hasWeights(folder);
}

/** Paths (absolute, relative with ./ or ../, or with more than one slash) are never Hub ids. */
function looksLikePath(s: string): boolean {
  return s.startsWith('.') || s.startsWith('/') || s.startsWith('~') || s.split('/').length > 2;
}

export interface ResolveOptions {
  revision?: string;
  variant?: string;
  cacheDir?: string;
  endpoint?: string;
  token?: string;
  /** Default: a progress bar on stderr. */
  onProgress?: (p: DownloadProgress) => void;
}

export async function resolveModel(nameOrPath: string, o: ResolveOptions = {}): Promise<string> {
  return resolveRepoFiles(nameOrPath, (files) => selectDiffusersFiles(files, o.variant), isCompleteSnapshot, o);
}

/**
 * A Hub dataset id to a local folder holding the parquet (or tar) shards of one split, from the
 * cache (`datasets--org--name`) or downloaded into it. Shards are found as the Hub lays them out:
 * `data/<split>-*.parquet`, `<split>/*.parquet` or `*.tar`.
 */
export async function resolveDataset(nameOrPath: string, o: ResolveOptions & { split?: string } = {}): Promise<string> {
  if (existsSync(nameOrPath)) return nameOrPath;
  if (looksLikePath(nameOrPath)) throw new HubError(`${nameOrPath}: no such file or folder`);
  checkRepoId(nameOrPath);
  const split = o.split ?? 'train';
  const wanted = (f: string) => /\.(parquet|tar)$/.test(f) && (f.split('/').pop()!.startsWith(`${split}-`) || f.startsWith(`${split}/`) || f.includes(`/${split}/`));
  const cached = cachedSnapshot(nameOrPath, { revision: o.revision, cacheDir: o.cacheDir, type: 'dataset' });
  if (cached) return cached;
  if (isOffline()) {
    throw new HubError(`dataset ${nameOrPath} is not in the Hugging Face cache ${repoCacheDir(nameOrPath, 'dataset', o.cacheDir ?? hubCacheDir())} and HF_HUB_OFFLINE is set`);
  }
  return snapshotDownload(nameOrPath, {
    type: 'dataset', revision: o.revision, cacheDir: o.cacheDir, endpoint: o.endpoint, token: o.token, onProgress: o.onProgress ?? stderrProgress(),
    select: (files) => {
      const chosen = files.filter(wanted);
      if (chosen.length === 0) throw new HubError(`dataset ${nameOrPath} has no parquet or tar shards for split '${split}'`);
      return chosen;
    },
  });
}

/**
 * A Hub model repo in a local folder (the cache's snapshot, downloaded when missing, only the files
 * `select` picks from the repo's list): a local folder or file is returned as it is. `complete`
 * says whether a cached snapshot already holds what is needed.
 */
export async function resolveRepoFiles(nameOrPath: string, select: (files: string[]) => string[], complete: (folder: string) => boolean, o: ResolveOptions = {}): Promise<string> {
  if (existsSync(nameOrPath)) return nameOrPath;
  if (looksLikePath(nameOrPath)) throw new HubError(`${nameOrPath}: no such file or folder`);
  checkRepoId(nameOrPath);
  const cached = cachedSnapshot(nameOrPath, { revision: o.revision, cacheDir: o.cacheDir });
  if (cached && complete(cached)) return cached;
  if (isOffline()) {
    throw new HubError(`${nameOrPath}${o.revision ? `@${o.revision}` : ''} is not (completely) in the Hugging Face cache ` +
      `${repoCacheDir(nameOrPath, 'model', o.cacheDir ?? hubCacheDir())} and HF_HUB_OFFLINE is set`);
  }
  return snapshotDownload(nameOrPath, {
    revision: o.revision, cacheDir: o.cacheDir, endpoint: o.endpoint, token: o.token, onProgress: o.onProgress ?? stderrProgress(), select,
  });
}
