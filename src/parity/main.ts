#!/usr/bin/env node
// npm run parity -- <fixtures folder> [--kind optimizer,lr_schedule] [--case name,...] [--verbose] [--json FILE]
// Prints, per case, the worst absolute and relative error and how much of its tolerance it used;
// exits 1 when any case fails, errors or cannot be run.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { runFolder, type CaseResult } from './run.js';

const HELP = `usage: npm run parity -- <folder> [options]

Runs every case of a fixtures folder (the ../shared/fixtures format: cases/<name>.json with
cases/<name>.safetensors) against this implementation.

options:
  --kind K1,K2     only cases of these kinds (e.g. optimizer,lr_schedule)
  --case N1,N2     only these cases
  --verbose        one line per compared tensor
  --json FILE      also write the results as JSON
  -h, --help       this text

exit status: 0 when every selected case passes; 1 when any fails, errors or is unsupported.`;

function fmt(x: number | undefined): string {
  if (x === undefined) return '-';
  if (!Number.isFinite(x)) return String(x);
  return x === 0 ? '0' : x.toExponential(2);
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      kind: { type: 'string' }, case: { type: 'string' }, verbose: { type: 'boolean' }, json: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
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
