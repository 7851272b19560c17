// Where the shared fixtures live (../shared/fixtures beside the checkout; FIXTURES_DIR overrides).
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const fixturesDir = process.env.FIXTURES_DIR ?? resolve(projectRoot, '..', 'shared', 'fixtures');
export const testFixtures = join(projectRoot, 'test', 'fixtures');

export function requireFixtures(): string {
  if (!existsSync(join(fixturesDir, 'cases'))) {
    throw new Error(`shared fixtures not found at ${fixturesDir} (set FIXTURES_DIR)`);
  }
  return fixturesDir;
}
