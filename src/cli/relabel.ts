// `diffusion-dpo relabel`: AI feedback as a file. Both images of every pair a run would keep are
// scored with the pair's caption and the better one marked preferred, in a sidecar JSONL (the
// dataset is not touched) that `train --choice_labels` reads. Resumable: run it again with the same
// --output to finish.
import { existsSync } from 'node:fs';
import { resolveDataset } from '../hub/index.js';
import { PreferenceDataset } from '../data/dataset.js';
import { loadScorer } from '../scoring/load.js';
import { relabelDataset } from '../scoring/relabel.js';
import { checkScorerName, SCORER_NAMES } from '../scoring/types.js';
import * as torch from '../torch/index.js';
import { resolveDeviceFlag } from '../util/device_flag.js';
import { flagsHelp } from '../util/flags.js';
import { HELP_FLAG, parseCommandFlags } from './args.js';
import { CliError } from './errors.js';
import type { Command } from './main.js';
import { progressLine } from './progress.js';

const FLAGS = {
  scorer: { type: 'string', default: null, valueName: 'NAME', help: SCORER_NAMES.join(', ') },
  model: { type: 'string', default: null, valueName: 'M', help: 'the scorer\'s model: a Hub id, a folder or a file (default: the reference\'s)' },
  processor: { type: 'string', default: null, valueName: 'P', help: 'where the tokenizer and preprocessor_config.json come from when the model folder has none' },
  dataset_name: { type: 'string', default: null, valueName: 'D', help: 'the preference data, as train takes it' },
  split: { type: 'string', default: 'train', valueName: 'S', help: 'the split' },
  caption_column: { type: 'string', default: 'caption', valueName: 'C', help: 'the caption column (tables)' },
  dreamlike_pairs_only: { type: 'boolean', default: false, help: 'only the pairs train --dreamlike_pairs_only keeps' },
  output: { type: 'string', default: null, valueName: 'L', help: 'the labels file (.jsonl); an existing one of the same scorer and dataset is completed' },
  batch_size: { type: 'int', default: 8, min: 1, valueName: 'N', help: 'pairs per scorer call (two images each)' },
  device: { type: 'string', default: 'auto', valueName: 'D', help: 'auto, cpu, cuda or cuda:N' },
  ...HELP_FLAG,
} as const;

const HELP = `usage: diffusion-dpo relabel --scorer NAME --dataset_name D --output L [options]

Scores both images of every pair (human split decisions left out, as training removes them) with
the pair's caption and writes which is preferred to L, a JSONL sidecar: a header line (scorer,
dataset, split), then a line per pair {row, score_0, score_1, label_0}; equal scores are ties
(0.5), which training removes. Pairs whose images cannot be read are listed with the error. The
dataset itself is never written. train --choice_labels L trains on these labels.

options:
${flagsHelp(FLAGS, { width: 28 })}`;

export const relabelCommand: Command = {
  summary: 'AI feedback: label preference pairs with a reward model, into a sidecar file',
  async run(argv) {
    const { values } = parseCommandFlags('relabel', FLAGS, argv);
    if (values.help) {
      console.log(HELP);
      return 0;
    }
    for (const f of ['scorer', 'dataset_name', 'output'] as const) if (!values[f]) throw new CliError(`--${f} is required\n\n${HELP}`, 2);
    let name;
    try {
      name = checkScorerName(values.scorer!);
    } catch (e) {
      throw new CliError(`--scorer: ${(e as Error).message}`, 2);
    }
    if (!values.output!.endsWith('.jsonl')) throw new CliError(`--output ${values.output}: name a .jsonl file`, 2);
    const sourcePath = await resolveDataset(values.dataset_name!, { split: values.split });
    const dataset = await PreferenceDataset.open(sourcePath, {
      split: values.split, dreamlikePairsOnly: values.dreamlike_pairs_only, method: 'dpo', columns: { caption: values.caption_column },
    });
    if (dataset.length === 0) throw new CliError(`${values.dataset_name}: no pair to label (${JSON.stringify(dataset.stats.bad)})`, 1);
    const device = resolveDeviceFlag(values.device, -1, torch.cuda.isAvailable() ? torch.cuda.deviceCount() : 0);
    const scorer = await loadScorer(name, { model: values.model ?? undefined, processor: values.processor ?? undefined, device, batchSize: 2 * values.batch_size });
    try {
      console.error(`relabel: ${dataset.length} pairs of ${dataset.stats.source} with ${scorer.description}${existsSync(values.output!) ? ` (completing ${values.output})` : ''}`);
      const progress = progressLine('relabel', { every: 100 });
      const r = await relabelDataset({
        dataset, scorer, file: values.output!, datasetName: values.dataset_name!, split: values.split, batchSize: values.batch_size,
        onProgress: (done, total) => progress(done, total, ''),
      });
      console.log(JSON.stringify({ output: r.file, pairs: dataset.length, scored_now: r.scored, scored_before: r.resumed, unscorable: r.errors, flipped: r.flipped, ties: r.ties }, null, 2));
      return 0;
    } finally {
      scorer.dispose();
    }
  },
};
