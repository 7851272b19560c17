// `diffusion-dpo cache`: encode a dataset's images (VAE posteriors) and captions (text conditioning)
// once, for `train --latent_cache`. It takes the trainer's model, data and transform flags, under
// the same names and with the same meaning, so the cache is made for exactly the run's rows.
import { FLAGS, type TrainFlags } from '../train/args.js';
import { resolveTrainConfig, type TrainConfig } from '../train/config.js';
import { openPreferenceData, resolveAndCheckModels } from '../train/recipe.js';
import { buildLatentCache } from '../cache/build.js';
import { cacheSettings, datasetIdentity } from '../cache/identity.js';
import { BadDataError } from '../train/bad_rows.js';
import { FlagError, flagsHelp, parseFlags } from '../util/flags.js';
import { HELP_FLAG, parseCommandFlags } from './args.js';
import { CliError } from './errors.js';
import type { Command } from './main.js';
import { progressLine } from './progress.js';

const SHARED = [
  'pretrained_model_name_or_path', 'revision', 'pretrained_vae_model_name_or_path', 'dataset_name', 'train_data_dir', 'image_column',
  'caption_column', 'split', 'max_train_samples', 'dreamlike_pairs_only', 'exclude_rows', 'cache_dir', 'seed', 'resolution', 'random_crop',
  'no_hflip', 'sdxl', 'sft', 'mixed_precision', 'device', 'dataloader_num_workers',
] as const satisfies readonly (keyof typeof FLAGS)[];

const CACHE_FLAGS = {
  ...Object.fromEntries(SHARED.map((k) => [k, FLAGS[k]])) as Pick<typeof FLAGS, (typeof SHARED)[number]>,
  output_dir: { type: 'string', default: null, help: 'The cache folder (required); an interrupted build there is resumed.' },
  encode_batch_size: { type: 'int', default: 8, min: 1, help: 'Images per VAE call and captions per text-encoder call.' },
  rows_per_shard: { type: 'int', default: 256, min: 1, help: 'Rows per shard file.' },
  ...HELP_FLAG,
} as const;

const HELP = `usage: diffusion-dpo cache --pretrained_model_name_or_path M --dataset_name D --output_dir C [options]

Encodes every kept row once: each image's VAE posterior (mean and log-variance, so every training
step still draws its own latent sample) for the unflipped view and, unless --no_hflip, the flipped
one; each caption's text conditioning, and the empty caption's (for caption dropout). Then
'train --latent_cache C' with the same model, data and transform flags trains without loading the
VAE or text encoders and without decoding an image. The weight dtype is --mixed_precision's, as in
training. Random crops cannot be cached. A killed build resumes where it stopped.

options:
${flagsHelp(CACHE_FLAGS, { width: 34 })}`;

/** The training config these flags stand for (every other train flag at its default). */
function configFor(values: Record<string, unknown>, given: ReadonlySet<string>): TrainConfig {
  const defaults = parseFlags(FLAGS, []).values as TrainFlags;
  const args = Object.assign({ ...defaults, ...values } as TrainFlags, { given: new Set([...given].filter((k) => k in FLAGS)) as ReadonlySet<keyof typeof FLAGS> });
  return resolveTrainConfig(args);
}

export const cacheCommand: Command = {
  summary: 'encode a dataset\'s images and captions once, for train --latent_cache',
  async run(argv) {
    const { values, given } = parseCommandFlags('cache', CACHE_FLAGS, argv);
    if (values.help) {
      console.log(HELP);
      return 0;
    }
    const usage = (m: string) => new CliError(`${m}\nRun 'diffusion-dpo cache --help' for the options.`, 2);
    if (!values.pretrained_model_name_or_path) throw usage('--pretrained_model_name_or_path is required');
    if (!values.dataset_name && !values.train_data_dir) throw usage('give --dataset_name (or --train_data_dir)');
    if (!values.output_dir) throw usage('--output_dir is required (the cache folder)');
    if (values.random_crop) throw usage('--random_crop cannot be cached: a random crop draws new offsets at every step (a cache holds center crops)');
    if (values.max_train_samples !== null && values.seed === null) throw usage('--max_train_samples picks its rows with --seed: give the seed the runs will use (or cache every row)');
    let config: TrainConfig;
    try {
      config = configFor(values, given);
    } catch (e) {
      if (e instanceof FlagError) throw usage(e.message);
      throw e;
    }
    for (const n of config.notes) if (/^(mixed precision|WARNING)/.test(n)) console.error(`[cache] ${n}`);
    const paths = await resolveAndCheckModels(config);
    const { dataset, sourcePath } = await openPreferenceData(config, config.seed ?? 0);
    const d = config.data;
    const settings = await cacheSettings({
      modelPath: paths.modelPath, vaeFolder: paths.vaeFolder, kind: config.model.sdxl ? 'sdxl' : 'sd', resolution: d.resolution, hflip: d.hflip,
      weightDtype: config.precision.weightDtype, pairs: dataset.source.pairs,
      dataset: datasetIdentity(sourcePath, d.split, dataset.stats, { dreamlikePairsOnly: d.dreamlikePairsOnly, maxTrainSamples: d.maxTrainSamples, seed: config.seed }),
    });
    console.error(`[cache] ${dataset.stats.source}: ${dataset.length} rows to encode at ${d.resolution} px (${settings.hflip === 'both' ? 'both views' : 'unflipped'}), ` +
      `${settings.weight_dtype}, on ${config.device}, into ${values.output_dir}`);
    const t0 = Date.now();
    const progress = progressLine('cache');
    const r = await buildLatentCache({
      modelPath: paths.modelPath, vaeFolder: paths.vaeFolder, settings, dataset, outputDir: values.output_dir, device: config.device,
      batchSize: values.encode_batch_size, rowsPerShard: values.rows_per_shard, numWorkers: d.numWorkers,
    }, {
      info: (m) => console.error(`[cache] ${m}`),
      progress: (p) => progress(p.rowsDone, p.rowsTotal, `${(p.rowsDone / Math.max(1e-3, (Date.now() - t0) / 1000)).toFixed(1)} rows/s${p.bad ? `, ${p.bad} unusable` : ''}`),
    });
    const byReason: Record<string, number> = {};
    for (const b of r.bad) byReason[b.reason] = (byReason[b.reason] ?? 0) + 1;
    const cached = r.rows - r.bad.length;
    console.log(JSON.stringify({
      output_dir: values.output_dir, rows: r.rows, cached, unusable: r.bad.length, unusable_by_reason: byReason, shards: r.shards,
      shards_written: r.shardsWritten, bytes: r.bytes, bytes_per_row: cached ? Math.round(r.bytes / cached) : null,
      seconds: (Date.now() - t0) / 1000,
    }, null, 2));
    if (cached === 0) throw new BadDataError(`no row could be cached (${JSON.stringify(byReason)})`);
    return 0;
  },
};
