import { UserError } from '../util/errors.js';
/** An expected failure of a command (bad input, missing file): printed as one line, no stack. */
export class CliError extends UserError {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'CliError';
  }
}
