// Runs every case of a fixtures folder (or a chosen subset) and reports the worst error per case.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../torch/index.js';
import { FixtureCase } from './case.js';
import type { Comparison } from './compare.js';
import { UnsupportedCase } from './runners/errors.js';
import { RUNNERS } from './runners/index.js';
import { runTokenizerCases } from './runners/tokenizer.js';

export type CaseStatus = 'pass' | 'FAIL' | 'UNSUPPORTED' | 'ERROR';

export interface CaseResult {
  name: string;
  kind: string;
  status: CaseStatus;
  comparisons: Comparison[];
  /** The comparison that used most of its tolerance. */
  worst?: Comparison;
  message?: string;
  seconds: number;
}

/** Case JSON files of a folder: <folder>/cases/*.json, or <folder>/*.json when given cases/ itself. */
export function findCases(folder: string): string[] {
  if (!existsSync(folder) || !statSync(folder).isDirectory()) throw new Error(`parity: '${folder}' is not a folder`);
  const dir = existsSync(join(folder, 'cases')) ? join(folder, 'cases') : folder;
  return readdirSync(dir).filter((f) => f.endsWith('.json')).sort().map((f) => join(dir, f));
}

export async function runCase(path: string): Promise<CaseResult> {
  const t0 = performance.now();
  let c: FixtureCase | undefined;
  const done = (r: Omit<CaseResult, 'seconds'>): CaseResult => ({ ...r, seconds: (performance.now() - t0) / 1000 });
  try {
    c = new FixtureCase(path);
    const runner = RUNNERS[c.kind];
    if (!runner) return done({ name: c.name, kind: c.kind, status: 'UNSUPPORTED', comparisons: [], message: `no runner for kind '${c.kind}'` });
    const before = torch.memory().liveTensors;
    // Synchronous runners run inside a scope; asynchronous ones (image decoding) manage their own.
    let pending: Promise<Comparison[]> | undefined;
    const sync = torch.tidy(() => {
      const r = runner(c!);
      if (r instanceof Promise) {
        pending = r;
        return [];
      }
      return r;
    });
    const comparisons = pending ? await pending : sync;
    const leaked = torch.memory().liveTensors - before;
    const judged = comparisons.filter((x) => !x.informational);
    const worst = judged.reduce<Comparison | undefined>((w, x) => (!w || x.usage > w.usage ? x : w), undefined);
    const ok = judged.length > 0 && judged.every((x) => x.ok);
    const drift = comparisons.filter((x) => x.informational);
    const driftNote = drift.length ? `; ${drift.length} trajectory values reported (worst ${Math.max(...drift.map((d) => d.usage)).toFixed(2)}x tolerance)` : '';
    return done({
      name: c.name, kind: c.kind, status: ok ? 'pass' : 'FAIL', comparisons, worst,
      ...(comparisons.length === 0 ? { message: 'the case compared nothing' } : {}),
      ...(driftNote ? { message: driftNote.slice(2) } : {}),
      ...(leaked !== 0 ? { message: `runner leaked ${leaked} tensors` } : {}),
    });
  } catch (e) {
    const name = c?.name ?? path;
    const kind = c?.kind ?? '?';
    if (e instanceof UnsupportedCase) return done({ name, kind, status: 'UNSUPPORTED', comparisons: [], message: e.message });
    return done({ name, kind, status: 'ERROR', comparisons: [], message: (e as Error).message });
  } finally {
    c?.close();
  }
}

/** The fixtures' tokenizer_cases.json (beside cases/, in a format of its own), as one case of kind 'tokenizer'. */
function runTokenizerFile(root: string): CaseResult {
  const t0 = performance.now();
  try {
    const comparisons = runTokenizerCases(root);
    const failed = comparisons.filter((c) => !c.ok);
    return {
      name: 'tokenizer_cases', kind: 'tokenizer', status: failed.length ? 'FAIL' : 'pass', comparisons,
      worst: failed[0] ?? comparisons[0], seconds: (performance.now() - t0) / 1000,
      message: `${comparisons.length - failed.length}/${comparisons.length} prompt x tokenizer variants exact`,
    };
  } catch (e) {
    return { name: 'tokenizer_cases', kind: 'tokenizer', status: 'ERROR', comparisons: [], message: (e as Error).message, seconds: (performance.now() - t0) / 1000 };
  }
}

export async function runFolder(folder: string, filter: { kinds?: string[]; cases?: string[] } = {}): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  const root = existsSync(join(folder, 'cases')) ? folder : join(folder, '..');
  if (existsSync(join(root, 'tokenizer_cases.json')) && (!filter.kinds || filter.kinds.includes('tokenizer')) &&
    (!filter.cases || filter.cases.includes('tokenizer_cases'))) {
    results.push(runTokenizerFile(root));
  }
  for (const path of findCases(folder)) {
    const name = path.split('/').pop()!.replace(/\.json$/, '');
    if (filter.cases && !filter.cases.includes(name)) continue;
    if (filter.kinds) {
      // Peek at the kind without running anything.
      const kind = (JSON.parse(readFileSyncUtf8(path)) as { kind?: string }).kind ?? '';
      if (!filter.kinds.includes(kind)) continue;
    }
    results.push(await runCase(path));
  }
  return results;
}

import { readFileSync } from 'node:fs';
function readFileSyncUtf8(p: string): string {
  return readFileSync(p, 'utf8');
}
