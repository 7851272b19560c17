// The diffusion-dpo command: a table of subcommands, each a typed function of its arguments.
import { cacheCommand } from './cache.js';
import { dataCommand } from './data.js';
import { doctorCommand } from './doctor.js';
import { demoCommand } from './demo.js';
import { trainCommand } from './train.js';
import { inspectCommand } from './inspect.js';
import { sampleCommand } from './sample.js';
import { compareCommand } from './compare.js';
import { evalCommand } from './eval.js';
import { launchCommand } from './launch.js';
import { mergeLoraCommand } from './merge_lora.js';
import { relabelCommand } from './relabel.js';
import { scoreCommand } from './score.js';
import { uploadCommand } from './upload.js';
import { isSystemError, messageWithCauses, stackWithCauses, UserError } from '../util/errors.js';
import { didYouMean, FlagError } from '../util/flags.js';
import { CliError } from './errors.js';

export interface Command {
  summary: string;
  run(argv: string[]): Promise<number> | number;
}

const COMMANDS: Record<string, Command> = {
  train: trainCommand,
  launch: launchCommand,
  demo: demoCommand,
  data: dataCommand,
  cache: cacheCommand,
  doctor: doctorCommand,
  inspect: inspectCommand,
  sample: sampleCommand,
  compare: compareCommand,
  eval: evalCommand,
  'merge-lora': mergeLoraCommand,
  score: scoreCommand,
  relabel: relabelCommand,
  upload: uploadCommand,
};

function usage(): string {
  const names = Object.keys(COMMANDS);
  const width = Math.max(...names.map((n) => n.length));
  return [
    'usage: diffusion-dpo <command> [options]',
    '',
    'commands:',
    ...names.map((n) => `  ${n.padEnd(width)}  ${COMMANDS[n]!.summary}`),
    '',
    "Run 'diffusion-dpo <command> --help' for a command's options; --debug (or DPO_DEBUG=1) prints the stack of any error.",
  ].join('\n');
}

/** What a user can act on from the message alone: bad input, a system error naming its path, running out of memory. */
function isExpected(e: unknown): boolean {
  return e instanceof UserError || isSystemError(e) || (e as { code?: unknown })?.code === 'TORCH_OOM';
}

/**
 * Runs a command. Expected failures print one line (exit 2 for a wrong command line, else 1);
 * anything else prints its stack, with its causes. --debug (anywhere on the command line) or
 * DPO_DEBUG=1 prints stacks always.
 */
export async function run(argvIn: string[]): Promise<number> {
  const debug = argvIn.includes('--debug') || process.env.DPO_DEBUG === '1';
  const argv = argvIn.filter((a) => a !== '--debug');
  const [name, ...rest] = argv;
  if (!name || name === '-h' || name === '--help' || name === 'help') {
    console.log(usage());
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    const near = didYouMean(name, Object.keys(COMMANDS));
    console.error(`diffusion-dpo: unknown command '${name}'${near ? `; did you mean ${near}?` : ''}\n\n${usage()}`);
    return 2;
  }
  return runCommand(name, command, rest, debug);
}

/** One command, with its failures reported as run() says. */
export async function runCommand(name: string, command: Command, argv: string[], debug = false): Promise<number> {
  try {
    return await command.run(argv);
  } catch (e) {
    if (debug) console.error(`diffusion-dpo ${name}: ${stackWithCauses(e)}`);
    if (isExpected(e)) {
      if (!debug) console.error(`diffusion-dpo ${name}: ${messageWithCauses(e)}`);
      return e instanceof CliError ? e.exitCode : e instanceof FlagError ? 2 : 1;
    }
    if (!debug) {
      console.error(`diffusion-dpo ${name}: unexpected error (a bug, or a failure of libtorch or the machine; please report it with this output):\n${stackWithCauses(e)}`);
    }
    return 1;
  }
}
