// Prompt sets for sampling: the reference notebook's 16 example prompts built in, and prompt files
// in the forms benchmark sets ship in (.txt lines; .jsonl/.json records or string lists, e.g. HPSv2's
// benchmark JSONs; .tsv/.csv/.parquet tables with a Prompt column, e.g. PartiPrompts), from a path,
// a folder of such files, or a Hub dataset.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { cachedSnapshot, checkRepoId, hubCacheDir, isOffline, repoCacheDir, snapshotDownload, stderrProgress } from '../hub/index.js';
import { UserError } from '../util/errors.js';
export const NOTEBOOK_PROMPTS: readonly string[] = [
  'A pile of sand swirling in the wind forming the shape of a dancer',
  'A giant dinosaur frozen into a glacier and recently discovered by scientists, cinematic still',
  'a smiling beautiful sorceress with long dark hair and closed eyes wearing a dark top surrounded by glowing fire sparks at night, magical light fog, deep focus+closeup, hyper-realistic, volumetric lighting, dramatic lighting, beautiful composition, intricate details, instagram, trending, photograph, film grain and noise, 8K, cinematic, post-production',
  'A purple raven flying over big sur, light fog, deep focus+closeup, hyper-realistic, volumetric lighting, dramatic lighting, beautiful composition, intricate details, instagram, trending, photograph, film grain and noise, 8K, cinematic, post-production',
  'a smiling beautiful sorceress wearing a modest high necked blue suit surrounded by swirling rainbow aurora, hyper-realistic, cinematic, post-production',
  'Anthro humanoid turtle skydiving wearing goggles, gopro footage',
  'A man in a suit surfing in a river',
  'photo of a zebra dressed suit and tie sitting at a table in a bar with a bar stools, award winning photography',
  'A typhoon in a tea cup, digital render',
  'A cute puppy leading a session of the United Nations, newspaper photography',
  'Worm eye view of rocketship',
  'Glass spheres in the desert, refraction render',
  'anthropmorphic coffee bean drinking coffee',
  'A baby kangaroo in a trenchcoat',
  'A towering hurricane of rainbow colors towering over a city, cinematic digital art',
  'A redwood tree rising up out of the ocean',
];

/** Shorthands for public prompt sets on the Hub. */
export const PROMPT_SETS: Record<string, string> = { parti: 'nateraw/parti-prompts' };

/**
 * Shorthands for prompt sets that are named files of a Hub dataset, read in this order (only
 * those files are fetched). hpsv2: HPSv2's benchmark, 800 prompts in each of four styles, the
 * files hpsv2.benchmark_prompts('all') reads (the folder also holds drawbench.json and image
 * tarballs, which are not part of it).
 */
export const PROMPT_FILE_SETS: Record<string, { repo: string; files: readonly string[] }> = {
  hpsv2: { repo: 'zhwang/HPDv2', files: ['benchmark/anime.json', 'benchmark/concept-art.json', 'benchmark/paintings.json', 'benchmark/photo.json'] },
};

/** Every shorthand, for messages. */
export const PROMPT_SET_NAMES: readonly string[] = ['notebook', ...Object.keys(PROMPT_SETS), ...Object.keys(PROMPT_FILE_SETS)];

const PROMPT_FILE = /\.(txt|jsonl|json|tsv|csv|parquet)$/i;
/** Column names a prompt is found under, in order (PartiPrompts uses "Prompt"). */
const PROMPT_KEYS = ['prompt', 'Prompt', 'caption', 'text'];

function promptOf(record: unknown, where: string): string {
  if (typeof record === 'string') return record;
  if (record && typeof record === 'object') {
    for (const k of PROMPT_KEYS) {
      const v = (record as Record<string, unknown>)[k];
      if (typeof v === 'string') return v;
    }
  }
  throw new UserError(`${where}: no prompt (expected a string or a record with one of ${PROMPT_KEYS.join(', ')})`);
}

/** The prompts of one file, by its extension; bad rows are errors naming file and line/row. */
export async function readPromptFile(path: string): Promise<string[]> {
  const ext = extname(path).toLowerCase();
  if (ext === '.parquet') {
    const file = await asyncBufferFromFile(path);
    const metadata = await parquetMetadataAsync(file);
    const names = metadata.schema.map((s) => s.name);
    const column = PROMPT_KEYS.find((k) => names.includes(k));
    if (!column) throw new UserError(`${path}: no prompt column (expected one of ${PROMPT_KEYS.join(', ')})`);
    const rows = (await parquetReadObjects({ file, metadata, columns: [column], compressors })) as Record<string, unknown>[];
    return rows.map((r, i) => promptOf(r, `${path}: row ${i}`));
  }
  const text = readFileSync(path, 'utf8');
  if (ext === '.jsonl') {
    // number rows by their line in the file, blank lines included
    return text.split('\n').map((l, i) => [l, i] as const).filter(([l]) => l.trim()).map(([l, i]) => {
      let o: unknown;
      try {
        o = JSON.parse(l);
      } catch {
        throw new UserError(`${path}:${i + 1}: not valid JSON`);
      }
      return promptOf(o, `${path}:${i + 1}`);
    });
  }
  if (ext === '.json') {
    let o: unknown;
    try {
      o = JSON.parse(text);
    } catch (e) {
      throw new UserError(`${path}: not valid JSON (${(e as Error).message})`);
    }
    if (!Array.isArray(o)) throw new UserError(`${path}: expected a JSON list of prompts`);
    return o.map((r, i) => promptOf(r, `${path}: item ${i}`));
  }
  if (ext === '.tsv' || ext === '.csv') {
    let rows: Record<string, unknown>[];
    try {
      rows = parseCsv(text, { columns: true, delimiter: ext === '.tsv' ? '\t' : ',', relax_quotes: true, skip_empty_lines: true, bom: true });
    } catch (e) {
      throw new UserError(`${path}: ${(e as Error).message}`);
    }
    return rows.map((r, i) => promptOf(r, `${path}: row ${i + 2}`));
  }
  return text.split('\n').map((l) => l.trim()).filter(Boolean);
}

/** Every prompt file of a folder (recursively, in path order). */
function promptFiles(folder: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(folder).sort()) {
    const p = join(folder, name);
    if (statSync(p).isDirectory()) out.push(...promptFiles(p));
    else if (PROMPT_FILE.test(name) && !/^readme/i.test(name)) out.push(p);
  }
  return out;
}

/**
 * A prompt set: 'notebook', a shorthand of PROMPT_SETS, a file or folder, or a Hub dataset id
 * (`org/name`, optionally `org/name:subfolder`) whose prompt files are read from the cache or
 * downloaded into it. Only text tables and lists are fetched, never image shards.
 */
export async function loadPromptSet(spec: string, o: { cacheDir?: string; endpoint?: string } = {}): Promise<string[]> {
  if (spec === 'notebook') return [...NOTEBOOK_PROMPTS];
  const fileSet = PROMPT_FILE_SETS[spec];
  if (fileSet) return loadHubPromptFiles(fileSet.repo, fileSet.files, o);
  const id = PROMPT_SETS[spec] ?? spec;
  if (existsSync(id)) {
    const files = statSync(id).isDirectory() ? promptFiles(id) : [id];
    if (files.length === 0) throw new UserError(`${id}: no prompt files (.txt, .jsonl, .json, .tsv, .csv, .parquet)`);
    return (await Promise.all(files.map(readPromptFile))).flat();
  }
  const [repo, sub = ''] = id.split(':') as [string, string?];
  try {
    checkRepoId(repo);
  } catch {
    throw new UserError(`prompt set '${spec}': not '${PROMPT_SET_NAMES[0]}', ${PROMPT_SET_NAMES.slice(1).join(', ')}, a file, a folder or a Hub dataset id`);
  }
  const under = (f: string) => !sub || f.startsWith(`${sub.replace(/\/+$/, '')}/`);
  let folder = cachedSnapshot(repo, { type: 'dataset', cacheDir: o.cacheDir });
  if (!folder) {
    if (isOffline()) throw new UserError(`dataset ${repo} is not in the Hugging Face cache ${repoCacheDir(repo, 'dataset', o.cacheDir ?? hubCacheDir())} and HF_HUB_OFFLINE is set`);
    folder = await snapshotDownload(repo, {
      type: 'dataset', cacheDir: o.cacheDir, endpoint: o.endpoint, onProgress: stderrProgress(),
      select: (files) => {
        const inSub = files.filter(under);
        // text files first; parquet only when there is nothing else (image datasets ship parquet shards)
        const text = inSub.filter((f) => PROMPT_FILE.test(f) && !/\.parquet$/i.test(f) && !/(^|\/)readme/i.test(f));
        const chosen = text.length > 0 ? text : inSub.filter((f) => /\.parquet$/i.test(f));
        if (chosen.length === 0) throw new UserError(`dataset ${repo} has no prompt files${sub ? ` under ${sub}/` : ''}`);
        return chosen;
      },
    });
  }
  const root = sub ? join(folder, sub) : folder;
  if (!existsSync(root)) throw new UserError(`dataset ${repo}: no folder ${sub}`);
  const files = promptFiles(root);
  const text = files.filter((f) => !/\.parquet$/i.test(f));
  const chosen = text.length > 0 ? text : files;
  if (chosen.length === 0) throw new UserError(`dataset ${repo}: no prompt files in ${root}`);
  return (await Promise.all(chosen.map(readPromptFile))).flat();
}

/** Named files of a Hub dataset, from the cache when they are all there, else downloaded (those files only). */
async function loadHubPromptFiles(repo: string, files: readonly string[], o: { cacheDir?: string; endpoint?: string }): Promise<string[]> {
  let folder = cachedSnapshot(repo, { type: 'dataset', cacheDir: o.cacheDir });
  if (!folder || !files.every((f) => existsSync(join(folder!, f)))) {
    if (isOffline()) throw new UserError(`dataset ${repo} (${files.join(', ')}) is not in the Hugging Face cache ${repoCacheDir(repo, 'dataset', o.cacheDir ?? hubCacheDir())} and HF_HUB_OFFLINE is set`);
    folder = await snapshotDownload(repo, {
      type: 'dataset', cacheDir: o.cacheDir, endpoint: o.endpoint, onProgress: stderrProgress(),
      select: (all) => {
        const missing = files.filter((f) => !all.includes(f));
        if (missing.length) throw new UserError(`dataset ${repo} has no ${missing.join(', ')}`);
        return [...files];
      },
    });
  }
  const root = folder;
  return (await Promise.all(files.map((f) => readPromptFile(join(root, f))))).flat();
}
