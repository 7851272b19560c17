// The diffusion-dpo command: a table of subcommands, each a typed function of its arguments.
import { dataCommand } from './data.js';
import { doctorCommand } from './doctor.js';
import { demoCommand, trainCommand } from './train.js';
import { inspectCommand } from './inspect.js';
import { sampleCommand } from './sample.js';
import { compareCommand } from './compare.js';
import { CliError } from './errors.js';

export interface Command {
  summary: string;
  run(argv: string[]): Promise<number> | number;
}

const COMMANDS: Record<string, Command> = {
  train: trainCommand,
  demo: demoCommand,
  data: dataCommand,
  doctor: doctorCommand,
  inspect: inspectCommand,
  sample: sampleCommand,
  compare: compareCommand,
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
    "Run 'diffusion-dpo <command> --help' for a command's options.",
  ].join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '-h' || name === '--help' || name === 'help') {
    console.log(usage());
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`diffusion-dpo: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  try {
    return await command.run(rest);
  } catch (e) {
    if (e instanceof CliError) {
      console.error(`diffusion-dpo ${name}: ${e.message}`);
      return e.exitCode;
    }
    throw e;
  }
}
