// Flag parsing for the subcommands: the one table-driven parser of src/util/flags.ts (typed values,
// choices, ranges, repeats, both spellings, did-you-mean), with a wrong command line reported as
// a usage error (exit status 2) that points at the command's --help.
import { FlagError, parseFlags, type FlagTable, type ParseOptions, type Parsed } from '../util/flags.js';
import { CliError } from './errors.js';

/** Every command's -h/--help. */
export const HELP_FLAG = { help: { type: 'boolean', default: false, short: 'h', help: 'this text' } } as const;

export function parseCommandFlags<T extends FlagTable>(command: string, table: T, argv: string[], o: ParseOptions = {}): Parsed<T> {
  try {
    return parseFlags(table, argv, o);
  } catch (e) {
    if (e instanceof FlagError) throw new CliError(`${e.message}\nRun 'diffusion-dpo ${command} --help' for the options.`, 2);
    throw e;
  }
}
