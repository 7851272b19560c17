// `diffusion-dpo data SOURCE`: what the trainer would read from a preference dataset, as a JSON
// summary (rows read, ties removed, rows kept, bad rows by reason), and with --dump N DIR the
// first N transformed pairs as side-by-side PNGs (preferred on the left).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { PreferenceDataset, type DatasetStats } from '../data/dataset.js';
import { PairLoader } from '../data/loader.js';
import { resolveDataset } from '../hub/index.js';
import { parseCommandArgs } from './args.js';
import { CliError } from './errors.js';
import type { Command } from './main.js';

const HELP = `usage: diffusion-dpo data SOURCE [options]

SOURCE: a folder of Pick-a-Pic-style parquet shards (<split>-*.parquet, at the top or in data/),
one .parquet file, a .jsonl/.csv table of {caption, image_0, image_1, label_0}, a folder with w/
and l/ image subfolders, or a Hub dataset id (resolved through the Hugging Face cache).

options:
  --split NAME                 split to read (default train)
  --dreamlike_pairs_only       keep pairs whose two models both contain "dream"
  --max_train_samples N        a seeded shuffle of the kept rows, then the first N
  --seed N                     seed for shuffling and augmentation (default 0)
  --sft                        count rows as SFT does (the preferred image only)
  --caption_column NAME        caption column of parquet shards (default caption)
  --resolution N               image size for --dump (default 512)
  --random_crop, --no_hflip    the training transforms' options, for --dump
  --dump N DIR                 write the first N transformed pairs as PNGs into DIR
  -h, --help                   this text`;

function toPng(pixels: Float32Array, offset: number, channels: number, res: number): Buffer {
  // CHW in [-1, 1] -> HWC uint8, the images of a pair side by side
  const images = channels / 3;
  const out = Buffer.alloc(res * res * images * 3);
  const plane = res * res;
  for (let k = 0; k < images; k++) {
    for (let y = 0; y < res; y++) {
      for (let x = 0; x < res; x++) {
        for (let c = 0; c < 3; c++) {
          const v = pixels[offset + (k * 3 + c) * plane + y * res + x]!;
          out[(y * res * images + k * res + x) * 3 + c] = Math.max(0, Math.min(255, Math.round((v + 1) * 127.5)));
        }
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
    const { values, positionals } = parseCommandArgs('data', argv, {
      split: { type: 'string' }, dreamlike_pairs_only: { type: 'boolean' }, max_train_samples: { type: 'string' },
      seed: { type: 'string' }, sft: { type: 'boolean' }, caption_column: { type: 'string' }, resolution: { type: 'string' },
      random_crop: { type: 'boolean' }, no_hflip: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    }, { positionals: true });
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
    const dumpN = dumpArgs ? int(dumpArgs[0], 'dump') : undefined;
    const dumpDir = dumpArgs?.[1];
    const rest = positionals;
    if (rest.length !== 1) throw new CliError(`expected one SOURCE\n\n${HELP}`, 2);
    const seed = int(values.seed, 'seed') ?? 0;
    let source: string;
    try {
      source = await resolveDataset(rest[0]!, { split: values.split as string | undefined });
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    let ds: PreferenceDataset;
    try {
      ds = await PreferenceDataset.open(source, {
        split: values.split as string | undefined, dreamlikePairsOnly: Boolean(values.dreamlike_pairs_only),
        maxTrainSamples: int(values.max_train_samples, 'max_train_samples'), seed, method: values.sft ? 'sft' : 'dpo',
        ...(values.caption_column ? { columns: { caption: values.caption_column as string } } : {}),
      });
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    const summary: DatasetStats & { dumped?: number; bad_rows_seen_while_dumping?: Record<string, number> } = { ...ds.stats };
    if (dumpN !== undefined && dumpDir) {
      const res = int(values.resolution, 'resolution') ?? 512;
      mkdirSync(dumpDir, { recursive: true });
      const loader = new PairLoader(ds, { batchSize: 1, resolution: res, seed, randomCrop: Boolean(values.random_crop), hflip: !values.no_hflip });
      let n = 0;
      try {
        for (let b = await loader.next(); b && n < dumpN; b = await loader.next(), n++) {
          const channels = b.shape[1];
          const png = toPng(b.pixelValues, 0, channels, res);
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
    return 0;
  },
};
