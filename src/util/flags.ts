// One flag parser for every command: a table of flags, each with its type, default, help text
// (written once, for --help and the docs), choices, range, and whether it repeats. Both spellings
// are accepted (--max_grad_norm and --max-grad-norm), as are `--name value` and `--name=value`;
// a switch takes no value (or =true/=false). Unknown flags are refused with the nearest known one.
import { UserError } from './errors.js';
export type FlagType = 'string' | 'int' | 'float' | 'boolean';

export interface FlagSpec {
  type: FlagType;
  default: string | number | boolean | null;
  help: string;
  choices?: readonly string[];
  /** Smallest allowed value (numbers). */
  min?: number;
  /** Largest allowed value (numbers). */
  max?: number;
  /** Repeatable: the value is the list of every occurrence (strings). */
  multiple?: boolean;
  /** Set to a non-default value: refused with this reason. */
  unsupported?: string;
  /** A one-letter alias (-h). */
  short?: string;
  /** Shown in --help after the flag name (default: the type). */
  valueName?: string;
}

export type FlagTable = Record<string, FlagSpec>;

/** A flag's value type: booleans; repeated strings; strings and numbers, nullable only where the default is null. */
export type FlagValue<S> = S extends { type: 'boolean' } ? boolean
  : S extends { multiple: true } ? string[]
  : S extends { type: 'string'; default: null } ? string | null
  : S extends { type: 'string' } ? string
  : S extends { default: null } ? number | null
  : number;

export type FlagValues<T extends FlagTable> = { -readonly [K in keyof T]: FlagValue<T[K]> };

export interface Parsed<T extends FlagTable> {
  values: FlagValues<T>;
  /** The flags the user set (on the command line, or in `extra`). */
  given: ReadonlySet<keyof T & string>;
  positionals: string[];
}

/** A usage error: the command line is wrong (exit status 2). */
export class FlagError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'FlagError';
  }
}

const FLOAT32_MAX = 3.4028234663852886e38;

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}

/** The known flag nearest to `name`, when it is near enough to be a typo. */
export function didYouMean(name: string, known: Iterable<string>): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const k of known) {
    const dist = k.startsWith(name) || name.startsWith(k) ? Math.abs(k.length - name.length) * 0.5 : editDistance(name, k);
    if (dist < bestDistance) [best, bestDistance] = [k, dist];
  }
  return best !== null && bestDistance <= Math.max(2, Math.floor(name.length / 4)) ? best : null;
}

/** Converts one raw value (a string from argv, or a JSON value from a config file) to the flag's type. */
export function convertFlag(name: string, spec: FlagSpec, raw: unknown, o: { float32?: boolean } = {}): string | number | boolean | null {
  if (raw === null) return null;
  switch (spec.type) {
    case 'boolean':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      throw new FlagError(`--${name} is a switch; got '${String(raw)}'`);
    case 'int':
    case 'float': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : Number.NaN;
      if (spec.type === 'int' ? !Number.isInteger(n) : !Number.isFinite(n)) throw new FlagError(`--${name} must be ${spec.type === 'int' ? 'an integer' : 'a number'}, got '${String(raw)}'`);
      // a float that ends up in float32 arithmetic beyond its range is an overflow error mid-run
      if (o.float32 && spec.type === 'float' && Math.abs(n) > FLOAT32_MAX) throw new FlagError(`--${name} must be within the float32 range (|x| <= 3.4e38), got ${n}`);
      if (spec.min !== undefined && n < spec.min) throw new FlagError(`--${name} must be >= ${spec.min}, got ${n}`);
      if (spec.max !== undefined && n > spec.max) throw new FlagError(`--${name} must be <= ${spec.max}, got ${n}`);
      return n;
    }
    default: {
      const s = String(raw);
      if (spec.choices && !spec.choices.includes(s)) throw new FlagError(`--${name} must be one of ${spec.choices.join(', ')}; got '${s}'`);
      return s;
    }
  }
}

export interface ParseOptions {
  /** Positional arguments allowed (default none). */
  positionals?: boolean;
  /** Values from elsewhere (a config file), under the flags' names; the command line wins. */
  extra?: Record<string, unknown>;
  /** Float flags must fit float32. */
  float32?: boolean;
}

export function parseFlags<T extends FlagTable>(table: T, argv: string[], o: ParseOptions = {}): Parsed<T> {
  const names = Object.keys(table);
  const shorts = new Map(names.filter((n) => table[n]!.short).map((n) => [table[n]!.short!, n]));
  const raw = new Map<string, unknown[]>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    let name: string | undefined;
    let inline: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      name = (eq > 0 ? a.slice(2, eq) : a.slice(2)).replace(/-/g, '_');
      inline = eq > 0 ? a.slice(eq + 1) : undefined;
    } else if (/^-[A-Za-z]$/.test(a) && shorts.has(a[1]!)) {
      name = shorts.get(a[1]!);
    } else {
      if (!o.positionals) throw new FlagError(`unexpected argument '${a}' (flags start with --)`);
      positionals.push(a);
      continue;
    }
    const spec = table[name!];
    if (!spec) {
      const near = didYouMean(name!, names);
      throw new FlagError(`unknown flag '${a.split('=')[0]}'${near ? `; did you mean --${near}?` : ''}`);
    }
    let value: unknown;
    if (inline !== undefined) value = inline;
    else if (spec.type === 'boolean') value = true;
    else {
      if (i + 1 >= argv.length || argv[i + 1]!.startsWith('--')) throw new FlagError(`--${name} needs a value`);
      value = argv[++i];
    }
    // a repeated single-valued flag: the last one wins, as argparse does (the demo appends the user's flags to its own)
    raw.set(name!, spec.multiple ? [...(raw.get(name!) ?? []), value] : [value]);
  }
  const extra = o.extra ?? {};
  const values: Record<string, unknown> = {};
  const given = new Set<string>();
  for (const name of names) {
    const spec = table[name]!;
    const fromExtra = name in extra ? extra[name] : extra[name.replace(/_/g, '-')];
    const occurrences = raw.get(name) ?? (fromExtra !== undefined ? (Array.isArray(fromExtra) && spec.multiple ? fromExtra : [fromExtra]) : null);
    if (occurrences) given.add(name);
    if (spec.multiple) {
      values[name] = (occurrences ?? []).map((v) => convertFlag(name, spec, v, o));
      continue;
    }
    const v = convertFlag(name, spec, occurrences ? occurrences[0] : spec.default, o);
    if (spec.unsupported && occurrences && v !== spec.default && v !== null && v !== '') throw new FlagError(`--${name}: ${spec.unsupported}`);
    values[name] = v;
  }
  return { values: values as FlagValues<T>, given: given as ReadonlySet<keyof T & string>, positionals };
}

/** The flags' part of a --help text, from the table. */
export function flagsHelp(table: FlagTable, o: { width?: number; showDefaults?: boolean } = {}): string {
  const width = o.width ?? 30;
  return Object.entries(table).map(([name, spec]) => {
    const value = spec.type === 'boolean' ? '' : ` ${spec.valueName ?? spec.type.toUpperCase()}`;
    const head = `  ${spec.short ? `-${spec.short}, ` : ''}--${name}${value}`;
    const def = (o.showDefaults ?? true) && spec.default !== null && spec.default !== '' && spec.default !== false ? ` (default ${String(spec.default)})` : '';
    return head.length + 1 > width ? `${head}\n${' '.repeat(width)}${spec.help}${def}` : head.padEnd(width) + spec.help + def;
  }).join('\n');
}
