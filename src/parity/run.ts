// Runs every case of a fixtures folder (or a chosen subset) and reports the worst error per case.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../torch/index.js';
import { FixtureCase } from './case.js';
import type { Comparison } from './compare.js';
import { UnsupportedCase } from './runners/errors.js';
import { RUNNERS } from './runners/index.js';

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

export function runCase(path: string): CaseResult {
  const t0 = performance.now();
  let c: FixtureCase | undefined;
  const done = (r: Omit<CaseResult, 'seconds'>): CaseResult => ({ ...r, seconds: (performance.now() - t0) / 1000 });
  try {
    c = new FixtureCase(path);
    const runner = RUNNERS[c.kind];
    if (!runner) return done({ name: c.name, kind: c.kind, status: 'UNSUPPORTED', comparisons: [], message: `no runner for kind '${c.kind}'` });
    const before = torch.memory().liveTensors;
    const comparisons = torch.tidy(() => runner(c!));
    const leaked = torch.memory().liveTensors - before;
    const worst = comparisons.reduce<Comparison | undefined>((w, x) => (!w || x.usage > w.usage ? x : w), undefined);
    const ok = comparisons.length > 0 && comparisons.every((x) => x.ok);
    return done({
      name: c.name, kind: c.kind, status: ok ? 'pass' : 'FAIL', comparisons, worst,
      ...(comparisons.length === 0 ? { message: 'the case compared nothing' } : {}),
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

export function runFolder(folder: string, filter: { kinds?: string[]; cases?: string[] } = {}): CaseResult[] {
  const results: CaseResult[] = [];
  for (const path of findCases(folder)) {
    const name = path.split('/').pop()!.replace(/\.json$/, '');
    if (filter.cases && !filter.cases.includes(name)) continue;
    if (filter.kinds) {
      // Peek at the kind without running anything.
      const kind = (JSON.parse(readFileSyncUtf8(path)) as { kind?: string }).kind ?? '';
      if (!filter.kinds.includes(kind)) continue;
    }
    results.push(runCase(path));
  }
  return results;
}

import { readFileSync } from 'node:fs';
function readFileSyncUtf8(p: string): string {
  return readFileSync(p, 'utf8');
}
