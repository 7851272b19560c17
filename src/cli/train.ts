// `diffusion-dpo train`: the reference train.py's flags, run by our trainer; and `diffusion-dpo demo`,
// the newcomer's main job: DPO on a generated tiny model and a learnable preference set.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ArgsError, parseTrainArgs, trainHelp } from '../train/args.js';
import { resolveTrainConfig, type TrainConfig } from '../train/config.js';
import { writeTinyPipeline, writeWarmPreferenceSet } from '../train/demo_assets.js';
import { train, type TrainEvents } from '../train/recipe.js';
import { CliError } from './errors.js';
import type { Command } from './main.js';
import { gracefulStop } from './signals.js';
import { progressLine } from './progress.js';

function consoleEvents(rank: number): TrainEvents {
  // with several processes rank 0 speaks for the job; the others print only warnings (errors end the process)
  if (rank > 0) return { info: (m) => { if (m.startsWith('WARNING')) console.error(`[train rank ${rank}] ${m}`); }, update: () => undefined };
  const progress = progressLine('step', { every: 10 });
  return {
    info: (m) => console.error(`[train] ${m}`),
    update: (p) => progress(p.step, p.total, `loss ${p.loss.toFixed(4)} lr ${p.lr.toExponential(2)}` +
      `${p.implicitAcc === null ? '' : ` implicit_acc ${p.implicitAcc.toFixed(3)}`} ${p.pairsPerSecond.toFixed(1)} pairs/s` +
      `${p.badRows ? ` bad rows ${p.badRows}` : ''}`),
  };
}

async function runTraining(argv: string[]): Promise<number> {
  let config: TrainConfig;
  try {
    config = resolveTrainConfig(parseTrainArgs(argv));
  } catch (e) {
    if (e instanceof ArgsError) throw new CliError(`${e.message}\nRun 'diffusion-dpo train --help' for the flags.`, 2);
    throw e; // a bad --exclude_rows or --config file names itself
  }
  const stop = gracefulStop('saving a checkpoint at the end of this update', (m) => console.error(`\n[train] ${m}`));
  try {
    const r = await train(config, consoleEvents(config.batch.rank), { signal: stop.signal });
    const last = r.history[r.history.length - 1];
    if (config.batch.rank === 0) console.log(JSON.stringify({ output_dir: r.outputDir, steps: r.globalStep, stopped_by: r.stoppedBy, last }, null, 2));
    return r.stoppedBy === 'signal' ? (stop.exitCode ?? 130) : 0;
  } finally {
    stop.dispose();
  }
}

export const trainCommand: Command = {
  summary: "fine-tune a UNet with Diffusion-DPO (or SFT) on preference pairs; train.py's flags",
  async run(argv) {
    if (argv.includes('--help') || argv.includes('-h')) {
      console.log(trainHelp());
      return 0;
    }
    return runTraining(argv);
  },
};

const DEMO_HELP = `usage: diffusion-dpo demo [--output_dir DIR] [--max_train_steps N] [train flags...]

Generates a tiny Stable Diffusion pipeline (random weights, ~7 MB) and a preference set where the
warmer-coloured image of each pair is preferred, then runs DPO training on them on the CPU:
implicit accuracy rises above 0.5 within a few minutes, and the run writes checkpoints, TensorBoard
logs, metrics.jsonl, report.html and the final pipeline into the output folder (default demo-run/).
Other train flags are passed through.`;

export const demoCommand: Command = {
  summary: 'the main job for newcomers: DPO on a generated tiny model and preference set, in CPU minutes',
  async run(argv) {
    if (argv.includes('--help') || argv.includes('-h')) {
      console.log(DEMO_HELP);
      return 0;
    }
    // the output folder, as --output_dir DIR or --output_dir=DIR (dashes or underscores)
    const outFlag = /^--output[-_]dir(=|$)/;
    const outIndex = argv.findIndex((a) => outFlag.test(a));
    const outArg = outIndex >= 0 ? argv[outIndex]! : '';
    const inline = outArg.includes('=');
    const outputDir = outIndex < 0 ? 'demo-run' : inline ? outArg.slice(outArg.indexOf('=') + 1) : argv[outIndex + 1];
    if (!outputDir) throw new CliError('--output_dir needs a value', 2);
    const inputs = join(outputDir, 'demo-inputs');
    if (!existsSync(join(inputs, 'model', 'model_index.json'))) {
      console.error(`[demo] generating a tiny pipeline and a preference set in ${inputs}`);
      writeTinyPipeline(join(inputs, 'model'));
      await writeWarmPreferenceSet(join(inputs, 'data'), 256);
    }
    const defaults = [
      '--pretrained_model_name_or_path', join(inputs, 'model'), '--dataset_name', join(inputs, 'data', 'pairs.jsonl'),
      '--output_dir', outputDir, '--resolution', '32', '--train_batch_size', '16', '--max_train_steps', '240',
      '--learning_rate', '3e-4', '--lr_scheduler', 'constant', '--lr_warmup_steps', '0', '--beta_dpo', '5000',
      '--checkpointing_steps', '80', '--mixed_precision', 'no', '--seed', '0', '--proportion_empty_prompts', '0',
      '--dataloader_num_workers', '0',
    ];
    // user flags come last and win
    const rest = outIndex < 0 ? argv : argv.filter((_, i) => i !== outIndex && (inline || i !== outIndex + 1));
    return runTraining([...defaults, ...rest]);
  },
};
