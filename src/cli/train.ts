// `diffusion-dpo train`: the reference train.py's flags, run by our trainer (`demo` runs it too).
import { ArgsError, parseTrainArgs, trainHelp } from '../train/args.js';
import { resolveTrainConfig, type TrainConfig } from '../train/config.js';
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

export async function runTraining(argv: string[]): Promise<number> {
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
