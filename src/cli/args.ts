// Option parsing shared by the subcommands: node's parseArgs in strict mode (unknown options are
// errors), with both spellings of each long option accepted (--max_grad_norm and --max-grad-norm).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CliError } from './errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

export function parseCommandArgs(command: string, argv: string[], options: Options, o: { positionals?: boolean } = {}) {
  const normalized = argv.map((a) => (a.startsWith('--') ? a.replace(/^--([^=]+)/, (_, n: string) => `--${n.replace(/-/g, '_')}`) : a));
  const opts: Options = {};
  for (const [k, v] of Object.entries(options)) opts[k.replace(/-/g, '_')] = v;
  try {
    return parseArgs({ args: normalized, options: opts, allowPositionals: o.positionals ?? false, strict: true });
  } catch (e) {
    throw new CliError(`${(e as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, '')}\nRun 'diffusion-dpo ${command} --help' for the options.`, 2);
  }
}
