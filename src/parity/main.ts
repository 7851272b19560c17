#!/usr/bin/env node
// npm run parity -- <fixtures folder> [--kind optimizer,lr_schedule] [--case name,...] [--verbose] [--json FILE]
// Prints, per case, the worst absolute and relative error and how much of its tolerance it used;
// exits 1 when any case fails, errors or cannot be run.
import { writeFileSync } from 'node:fs';
import { FlagError, flagsHelp, parseFlags } from '../util/flags.js';
import { runFolder, type CaseResult } from './run.js';

const FLAGS = {
  kind: { type: 'string', default: null, valueName: 'K1,K2', help: 'only cases of these kinds (e.g. optimizer,lr_schedule)' },
  case: { type: 'string', default: null, valueName: 'N1,N2', help: 'only these cases' },
  verbose: { type: 'boolean', default: false, help: 'one line per compared tensor' },
  json: { type: 'string', default: null, valueName: 'FILE', help: 'also write the results as JSON' },
  help: { type: 'boolean', default: false, short: 'h', help: 'this text' },
} as const;

const HELP = `usage: npm run parity -- <folder> [options]

Runs every case of a fixtures folder (the ../shared/fixtures format: cases/<name>.json with
cases/<name>.safetensors) against this implementation.

options:
${flagsHelp(FLAGS, { width: 18 })}

exit status: 0 when every selected case passes; 1 when any fails, errors or is unsupported.`;

function fmt(x: number | undefined): string {
  if (x === undefined) return '-';
  if (!Number.isFinite(x)) return String(x);
  return x === 0 ? '0' : x.toExponential(2);
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseFlags(FLAGS, process.argv.slice(2), { positionals: true });
  } catch (e) {
    if (!(e instanceof FlagError)) throw e;
    console.error(`parity: ${e.message}\n\n${HELP}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length !== 1) {
    console.error(HELP);
    return 2;
  }
  const results: CaseResult[] = await runFolder(positionals[0]!, {
    ...(values.kind ? { kinds: values.kind.split(',') } : {}),
    ...(values.case ? { cases: values.case.split(',') } : {}),
  });
  const rows = results.map((r) => [r.name, r.kind, r.status, r.worst?.name ?? '-', fmt(r.worst?.maxAbs), fmt(r.worst?.maxRel),
    r.worst ? `${fmt(r.worst.tolerance.atol)}/${fmt(r.worst.tolerance.rtol)}` : '-', r.worst ? r.worst.usage.toFixed(3) : '-', r.message ?? '']);
  const header = ['case', 'kind', 'status', 'worst output', 'max abs', 'max rel', 'atol/rtol', 'used', 'note'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  console.log(line(header));
  for (const [i, r] of rows.entries()) {
    console.log(line(r));
    if (values.verbose) {
      for (const c of results[i]!.comparisons) {
        console.log(`    ${c.informational ? 'info' : c.ok ? 'ok  ' : 'FAIL'} ${c.name}: max abs ${fmt(c.maxAbs)}, max rel ${fmt(c.maxRel)}, used ${c.usage.toFixed(3)}${c.detail ? ` (${c.detail})` : ''}`);
      }
    }
  }
  const count = (s: string) => results.filter((r) => r.status === s).length;
  console.log(`\n${count('pass')} passed, ${count('FAIL')} failed, ${count('UNSUPPORTED')} unsupported, ${count('ERROR')} errors (${results.length} cases)`);
  if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2));
  return results.length > 0 && results.every((r) => r.status === 'pass') ? 0 : 1;
}

process.exitCode = await main();
