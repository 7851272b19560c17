// `diffusion-dpo data SOURCE`: what the trainer would read from a preference dataset, as a JSON
// summary (rows read, ties removed, rows kept, bad rows by reason); with --verify, every image
// decoded and every row checked (exit 3 when some are unusable, their ids optionally written for
// train --exclude_rows); with --dump N DIR the first N transformed pairs as side-by-side PNGs
// (preferred on the left).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { PreferenceDataset, readRowIds, type DatasetStats } from '../data/dataset.js';
import { PairLoader } from '../data/loader.js';
import { verifyDataset } from '../data/verify.js';
import { writeFileAtomic } from '../models/index.js';
import { resolveDataset } from '../hub/index.js';
import { flagsHelp } from '../util/flags.js';
import { HELP_FLAG, parseCommandFlags } from './args.js';
import { CliError } from './errors.js';
import type { Command } from './main.js';

const DATA_FLAGS = {
  split: { type: 'string', default: 'train', valueName: 'NAME', help: 'split to read' },
  dreamlike_pairs_only: { type: 'boolean', default: false, help: 'keep pairs whose two models both contain "dream"' },
  max_train_samples: { type: 'int', default: null, min: 1, valueName: 'N', help: 'a seeded shuffle of the kept rows, then the first N' },
  seed: { type: 'int', default: 0, min: 0, valueName: 'N', help: 'seed for shuffling and augmentation' },
  sft: { type: 'boolean', default: false, help: 'count rows as SFT does (the preferred image only; single-image data allowed)' },
  caption_column: { type: 'string', default: 'caption', valueName: 'NAME', help: 'caption column' },
  image_column: { type: 'string', default: 'image', valueName: 'NAME', help: 'image column of single-image SFT data' },
  exclude_rows: { type: 'string', default: null, valueName: 'FILE', help: 'leave out these row ids (as train --exclude_rows)' },
  verify: { type: 'boolean', default: false, help: 'read every kept row and decode every image it would train on; exit 3 when some rows are unusable (without it, images are not decoded)' },
  write_exclude: { type: 'string', default: null, valueName: 'FILE', help: 'with --verify: write the unusable rows\' ids (for train --exclude_rows)' },
  concurrency: { type: 'int', default: 8, min: 1, valueName: 'N', help: 'with --verify: rows checked at once' },
  resolution: { type: 'int', default: 512, min: 1, valueName: 'N', help: 'image size for --dump' },
  random_crop: { type: 'boolean', default: false, help: 'the training transforms\' random crop, for --dump' },
  no_hflip: { type: 'boolean', default: false, help: 'no random horizontal flip, for --dump' },
  ...HELP_FLAG,
} as const;

const HELP = `usage: diffusion-dpo data SOURCE [options]

SOURCE: a folder of Pick-a-Pic-style parquet shards (<split>-*.parquet, at the top or in data/),
one .parquet file, a .jsonl/.csv table of {caption, image_0, image_1, label_0}, a folder with w/
and l/ image subfolders, or a Hub dataset id (resolved through the Hugging Face cache).

options:
${flagsHelp(DATA_FLAGS, { width: 30 })}
  --dump N DIR                write the first N transformed pairs as PNGs into DIR`;

/** A progress line on stderr: redrawn in place on a terminal, every tenth otherwise. */
function progress(label: string): (done: number, total: number, bad: number) => void {
  const t0 = Date.now();
  let lastTenth = -1;
  return (done, total, bad) => {
    const line = `${label} ${done}/${total} rows, ${bad} unusable, ${((done / Math.max(1, (Date.now() - t0) / 1000))).toFixed(0)} rows/s`;
    if (process.stderr.isTTY) process.stderr.write(`\r${line}\x1b[K${done === total ? '\n' : ''}`);
    else if (Math.floor((done * 10) / total) !== lastTenth || done === total) {
      lastTenth = Math.floor((done * 10) / total);
      console.error(line);
    }
  };
}

function toPng(pixels: Uint8Array, channels: number, res: number): Buffer {
  // CHW uint8 -> HWC, the images of a pair side by side
  const images = channels / 3;
  const out = Buffer.alloc(res * res * images * 3);
  const plane = res * res;
  for (let k = 0; k < images; k++) {
    for (let y = 0; y < res; y++) {
      for (let x = 0; x < res; x++) {
        for (let c = 0; c < 3; c++) out[(y * res * images + k * res + x) * 3 + c] = pixels[(k * 3 + c) * plane + y * res + x]!;
      }
    }
  }
  return out;
}

export const dataCommand: Command = {
  summary: 'summarise a preference dataset; --dump shows the transformed pairs',
  async run(argvIn) {
    // --dump takes two values (N and DIR); take them out before the generic parser sees them
    const argv = [...argvIn];
    let dumpArgs: [string, string] | undefined;
    const d = argv.indexOf('--dump');
    if (d >= 0) {
      if (argv.length < d + 3) throw new CliError('--dump needs a count and a folder: --dump N DIR', 2);
      dumpArgs = [argv[d + 1]!, argv[d + 2]!];
      argv.splice(d, 3);
    }
    const { values, positionals } = parseCommandFlags('data', DATA_FLAGS, argv, { positionals: true });
    if (values.help) {
      console.log(HELP);
      return 0;
    }
    const int = (v: unknown, name: string) => {
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new CliError(`--${name} must be a non-negative integer, got '${String(v)}'`, 2);
      return n;
    };
    if (values.write_exclude && !values.verify) throw new CliError('--write_exclude needs --verify (the ids come from decoding every image)', 2);
    const dumpN = dumpArgs ? int(dumpArgs[0], 'dump') : undefined;
    const dumpDir = dumpArgs?.[1];
    const rest = positionals;
    if (rest.length !== 1) throw new CliError(`expected one SOURCE\n\n${HELP}`, 2);
    const seed = values.seed;
    const source = await resolveDataset(rest[0]!, { split: values.split });
    const ds = await PreferenceDataset.open(source, {
        split: values.split, dreamlikePairsOnly: values.dreamlike_pairs_only,
        maxTrainSamples: values.max_train_samples ?? undefined, seed, method: values.sft ? 'sft' : 'dpo',
        columns: { caption: values.caption_column, image: values.image_column },
        excludeRows: values.exclude_rows ? readRowIds(values.exclude_rows) : undefined,
      });
    const { badRows, ...stats } = ds.stats;
    const summary: Omit<DatasetStats, 'badRows'> & Record<string, unknown> = { ...stats, unusable_rows: badRows.length };
    let exitCode = 0;
    if (values.verify) {
      const v = await verifyDataset(ds, { concurrency: values.concurrency, onProgress: progress('verify:') });
      summary.verify = {
        rows_checked: v.rowsChecked, images_decoded: v.imagesDecoded, unusable: v.badRows.length, by_reason: v.bad,
        ids: v.badRows.map((b) => b.row), first_details: v.badRows.slice(0, 50),
      };
      if (values.write_exclude) writeFileAtomic(values.write_exclude, v.badRows.map((b) => JSON.stringify(b)).join('\n') + (v.badRows.length ? '\n' : ''));
      if (v.badRows.length) exitCode = 3;
    } else {
      summary.images = 'not decoded: the counts come from the labels and columns only (--verify decodes every image)';
    }
    if (dumpN !== undefined && dumpDir) {
      const res = values.resolution;
      mkdirSync(dumpDir, { recursive: true });
      const loader = new PairLoader(ds, { batchSize: 1, resolution: res, seed, randomCrop: values.random_crop, hflip: !values.no_hflip });
      let n = 0;
      try {
        for (let b = await loader.next(); b && n < dumpN; b = await loader.next(), n++) {
          const channels = b.shape[1];
          const png = toPng(b.pixels!, channels, res);
          await sharp(png, { raw: { width: res * (channels / 3), height: res, channels: 3 } }).png()
            .withMetadata({}).toFile(join(dumpDir, `${String(n).padStart(4, '0')}-row${b.rows[0]}.png`));
        }
      } finally {
        await loader.close();
      }
      summary.dumped = n;
      summary.bad_rows_seen_while_dumping = loader.badRows as Record<string, number>;
    }
    console.log(JSON.stringify(summary, null, 2));
    return exitCode;
  },
};
