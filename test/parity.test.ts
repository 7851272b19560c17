// test_against_reference: every case of ../shared/fixtures whose kind this build runs must pass, and
// every kind is run (the tokenizer cases by their own runner).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runFolder } from '../src/parity/run.js';
import { RUNNERS } from '../src/parity/runners/index.js';
import { requireFixtures } from './helpers/fixtures.js';

test('every supported fixture case passes', async () => {
  const folder = requireFixtures();
  const results = await runFolder(folder, { kinds: [...Object.keys(RUNNERS), 'tokenizer'] });
  assert.ok(results.length >= 11, `only ${results.length} cases ran`);
  assert.ok(results.some((r) => r.name === 'tokenizer_cases'), 'tokenizer cases ran');
  for (const r of results) assert.equal(r.status, 'pass', `${r.name}: ${r.status} ${r.message ?? ''} ${JSON.stringify(r.worst ?? {})}`);
});

test('every kind of case has a runner: none is left unsupported', () => {
  const folder = requireFixtures();
  const kinds = new Set(readdirSync(join(folder, 'cases')).filter((f) => f.endsWith('.json'))
    .map((f) => (JSON.parse(readFileSync(join(folder, 'cases', f), 'utf8')) as { kind: string }).kind));
  const missing = [...kinds].filter((k) => !RUNNERS[k]).sort();
  assert.deepEqual(missing, []);
});
