// `diffusion-dpo score`: one reward model over images, a row per image (image, prompt, score). The
// prompt of each image comes from --prompt (one for all), a --prompts file, or the PNG text chunk
// `sample` and `compare` write; everything is checked (the scorer's name, every image found and
// readable as a file, every image given a prompt) before the model loads.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { decodeForScoring } from '../data/decode.js';
import { writeFileAtomic } from '../models/loading.js';
import { readPngText } from '../pipelines/png.js';
import { checkScorerName, loadScorer } from '../scoring/load.js';
import { SCORER_NAMES } from '../scoring/types.js';
import { resolveDeviceFlag } from '../util/device_flag.js';
import { flagsHelp } from '../util/flags.js';
import * as torch from '../torch/index.js';
import { HELP_FLAG, parseCommandFlags } from './args.js';
import { CliError } from './errors.js';
import type { Command } from './main.js';
import { progressLine } from './progress.js';

const FLAGS = {
  scorer: { type: 'string', default: null, valueName: 'NAME', help: `${SCORER_NAMES.join(', ')}` },
  model: { type: 'string', default: null, valueName: 'M', help: 'the scorer\'s model: a Hub id, a folder or a file (default: the reference\'s; docs/scoring.md)' },
  processor: { type: 'string', default: null, valueName: 'P', help: 'where the tokenizer and preprocessor_config.json come from when the model folder has none' },
  prompt: { type: 'string', default: null, valueName: 'TEXT', help: 'one prompt for every image' },
  prompts: { type: 'string', default: null, valueName: 'FILE', help: 'the images\' prompts: .jsonl/.csv with image and prompt columns (matched by path or file name), or .txt with one line per image in the order listed' },
  output: { type: 'string', default: null, valueName: 'FILE', help: 'FILE.csv or FILE.jsonl (default: CSV on stdout)' },
  batch_size: { type: 'int', default: 16, min: 1, valueName: 'N', help: 'images per forward pass' },
  softmax: { type: 'boolean', default: false, help: 'pickscore: add each image\'s probability among the images of the same prompt (softmax of the scaled scores, the reference\'s Selector with softmax=True)' },
  device: { type: 'string', default: 'auto', valueName: 'D', help: 'auto, cpu, cuda or cuda:N' },
  ...HELP_FLAG,
} as const;

const HELP = `usage: diffusion-dpo score --scorer NAME [--model M] [--processor P] [--prompt TEXT | --prompts FILE] [--output FILE.csv|FILE.jsonl] IMAGE_OR_DIR...

Scores images with a reward model: a row per image with its prompt and score (higher is better).
Without --prompt or --prompts, each image's prompt is read from the PNG text chunk that sample,
compare and eval write. Folders are searched for .png, .jpg, .jpeg and .webp files (not recursively).

options:
${flagsHelp(FLAGS, { width: 28 })}`;

const IMAGE_EXT = /\.(png|jpe?g|webp)$/i;

export interface ListedImage {
  file: string;
  /** Named on the command line (not found in a folder). */
  named: boolean;
}

/** The image files named: files as given, folders' images sorted by name. */
export function listImages(paths: string[]): ListedImage[] {
  const out: ListedImage[] = [];
  for (const p of paths) {
    if (!existsSync(p)) throw new CliError(`${p}: no such file or folder`, 2);
    if (statSync(p).isDirectory()) {
      const found = readdirSync(p).filter((f) => IMAGE_EXT.test(f)).sort().map((f) => ({ file: join(p, f), named: false }));
      if (found.length === 0) throw new CliError(`${p}: no .png, .jpg, .jpeg or .webp image in this folder`, 2);
      out.push(...found);
    } else {
      out.push({ file: p, named: true });
    }
  }
  return out;
}

/**
 * The images to score and their prompts, or an error naming the images that have none. Reading the
 * PNGs' own prompts, a folder's images without one (sample's grid.png) are left out and said.
 */
function promptsFor(listed: ListedImage[], o: { prompt: string | null; prompts: string | null }): { images: string[]; prompts: string[] } {
  if (o.prompt !== null && o.prompts !== null) throw new CliError('give --prompt or --prompts, not both', 2);
  const images = listed.map((l) => l.file);
  if (o.prompt !== null) return { images, prompts: images.map(() => o.prompt!) };
  if (o.prompts !== null) return { images, prompts: promptsFromFile(images, o.prompts) };
  const kept: string[] = [];
  const prompts: string[] = [];
  const skipped: string[] = [];
  const missing: string[] = [];
  for (const { file, named } of listed) {
    const p = file.toLowerCase().endsWith('.png') ? readPngText(readFileSync(file)).prompt : undefined;
    if (p !== undefined) {
      kept.push(file);
      prompts.push(p);
    } else {
      (named ? missing : skipped).push(file);
    }
  }
  if (missing.length) throw new CliError(`no prompt for ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ` (${missing.length} images)` : ''}: these images carry none (give --prompt or --prompts)`, 2);
  if (skipped.length) console.error(`left out ${skipped.length} image(s) of the folders that carry no prompt: ${skipped.slice(0, 3).map((f) => basename(f)).join(', ')}${skipped.length > 3 ? ', ...' : ''}`);
  if (kept.length === 0) throw new CliError('no image to score: none carries a prompt (give --prompt or --prompts)', 2);
  return { images: kept, prompts };
}

/** The prompts of a --prompts file: a .txt line per image, or .jsonl/.csv rows with image and prompt. */
function promptsFromFile(images: string[], file: string): string[] {
  if (!existsSync(file)) throw new CliError(`--prompts ${file}: no such file`, 2);
  const text = readFileSync(file, 'utf8');
  const ext = extname(file).toLowerCase();
  if (ext === '.txt') {
    const lines = text.split('\n').map((l) => l.replace(/\r$/, '')).filter((l, i, all) => l !== '' || i < all.length - 1);
    if (lines.length !== images.length) throw new CliError(`--prompts ${file}: ${lines.length} lines for ${images.length} images (one line per image, in the order listed)`, 2);
    return lines;
  }
  let rows: Record<string, unknown>[];
  try {
    rows = ext === '.csv' ? (parseCsv(text, { columns: true, skip_empty_lines: true }) as Record<string, unknown>[])
      : text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Record<string, unknown>);
  } catch (e) {
    throw new CliError(`--prompts ${file}: ${(e as Error).message.split('\n')[0]}`, 2);
  }
  const byPath = new Map<string, string>();
  for (const r of rows) if (typeof r.image === 'string' && typeof r.prompt === 'string') byPath.set(r.image, r.prompt);
  const missing: string[] = [];
  const out = images.map((img) => {
    const p = byPath.get(img) ?? byPath.get(resolve(img)) ?? byPath.get(basename(img));
    if (p === undefined) missing.push(img);
    return p ?? '';
  });
  if (missing.length) throw new CliError(`--prompts ${file}: no prompt for ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ` (${missing.length} images)` : ''} (rows need image and prompt columns)`, 2);
  return out;
}

function csvField(v: string | number): string {
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export const scoreCommand: Command = {
  summary: 'score images with PickScore, HPSv2/2.1, CLIP or LAION aesthetics',
  async run(argv) {
    const { values, positionals } = parseCommandFlags('score', FLAGS, argv, { positionals: true });
    if (values.help) {
      console.log(HELP);
      return 0;
    }
    if (!values.scorer) throw new CliError(`--scorer is required (${SCORER_NAMES.join(', ')})\n\n${HELP}`, 2);
    let name;
    try {
      name = checkScorerName(values.scorer);
    } catch (e) {
      throw new CliError(`--scorer: ${(e as Error).message}`, 2);
    }
    if (values.softmax && name !== 'pickscore') throw new CliError(`--softmax applies to pickscore (its scores are logit-scaled); ${name}'s are not`, 2);
    if (positionals.length === 0) throw new CliError(`give the images (files or folders)\n\n${HELP}`, 2);
    const format = values.output === null ? 'csv' : extname(values.output).toLowerCase() === '.jsonl' ? 'jsonl' : extname(values.output).toLowerCase() === '.csv' ? 'csv' : null;
    if (!format) throw new CliError(`--output ${values.output}: name a .csv or .jsonl file`, 2);
    const { images, prompts } = promptsFor(listImages(positionals), values);
    const device = resolveDeviceFlag(values.device, -1, torch.cuda.isAvailable() ? torch.cuda.deviceCount() : 0);
    const scorer = await loadScorer(name, { model: values.model ?? undefined, processor: values.processor ?? undefined, device, batchSize: values.batch_size });
    const scores: number[] = [];
    try {
      console.error(`scorer ${scorer.description}; ${images.length} images on ${device}`);
      const progress = progressLine('score', { every: 50 });
      for (let i = 0; i < images.length; i += values.batch_size) {
        const files = images.slice(i, i + values.batch_size);
        const decoded = await Promise.all(files.map(async (f) => {
          try {
            return await decodeForScoring(readFileSync(f));
          } catch (e) {
            throw new CliError(`${f}: ${(e as Error).message}`, 1);
          }
        }));
        scores.push(...await scorer.score(decoded.map((image, k) => ({ image, prompt: prompts[i + k]! }))));
        progress(Math.min(images.length, i + values.batch_size), images.length, basename(files[files.length - 1]!));
      }
    } finally {
      scorer.dispose();
    }
    // the softmax over each prompt's images
    const probabilities = values.softmax ? softmaxByPrompt(prompts, scores) : null;
    const rows = images.map((image, i) => ({ image, prompt: prompts[i]!, score: scores[i]!, ...(probabilities ? { probability: probabilities[i]! } : {}) }));
    const text = format === 'jsonl'
      ? rows.map((r) => JSON.stringify(r)).join('\n') + '\n'
      : [['image', 'prompt', 'score', ...(probabilities ? ['probability'] : [])].join(','), ...rows.map((r) => Object.values(r).map(csvField).join(','))].join('\n') + '\n';
    if (values.output) writeFileAtomic(values.output, text);
    else process.stdout.write(text);
    return 0;
  },
};

/** softmax of the scores within each group of equal prompts. */
export function softmaxByPrompt(prompts: string[], scores: number[]): number[] {
  const groups = new Map<string, number[]>();
  prompts.forEach((p, i) => groups.set(p, [...(groups.get(p) ?? []), i]));
  const out = new Array<number>(scores.length);
  for (const idx of groups.values()) {
    const max = Math.max(...idx.map((i) => scores[i]!));
    const exps = idx.map((i) => Math.exp(scores[i]! - max));
    const sum = exps.reduce((a, b) => a + b, 0);
    idx.forEach((i, k) => (out[i] = exps[k]! / sum));
  }
  return out;
}
