// Two kinds of failure, kept apart (as vscode's errors.ts keeps BugIndicatingError apart from
// expected errors): a UserError is caused by the input (a flag, a file, a dataset, a model that
// does not fit) and its message alone tells the user what to change, so the CLI prints it on one
// line; anything else is a bug or an environment failure, and the CLI prints its stack.
export class UserError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UserError';
  }
}

/** A Node.js system error (ENOENT, EACCES, EROFS, ENOSPC, ...): its message names the path and the OS error. */
export function isSystemError(e: unknown): e is NodeJS.ErrnoException {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' && /^E[A-Z]+$/.test((e as NodeJS.ErrnoException).code!);
}

/** The message, then each cause's, joined (a wrapped system error keeps its code and path). */
export function messageWithCauses(e: unknown): string {
  const parts: string[] = [];
  for (let c: unknown = e, depth = 0; c instanceof Error && depth < 5; c = c.cause, depth++) {
    if (!parts.some((p) => p.includes(c instanceof Error ? c.message : ''))) parts.push(c.message);
  }
  return parts.join(': ');
}

/** The stack, then each cause's. */
export function stackWithCauses(e: unknown): string {
  const parts: string[] = [];
  for (let c: unknown = e, depth = 0; depth < 5 && c !== undefined; c = c instanceof Error ? c.cause : undefined, depth++) {
    parts.push(depth === 0 ? String(c instanceof Error ? c.stack : c) : `caused by: ${String(c instanceof Error ? c.stack : c)}`);
  }
  return parts.join('\n');
}
