// Headless Chromium for the tests of generated HTML pages, with no npm package: the browser's own
// command line. --dump-dom prints the DOM after the load event (so a page's script can leave
// results in attributes); --enable-logging=stderr prints every console message as a log line
// ("...:INFO:CONSOLE:12] "text", source: file://... (12)" in Chromium >= 120, "CONSOLE(12)" before),
// uncaught exceptions included; --screenshot writes a PNG of the window.
// Found as CHROME_PATH or CHROMIUM, else chromium / chromium-browser / google-chrome on PATH.
// CI (.ci/run) installs Debian's chromium and sets DPO_REQUIRE_CHROMIUM=1, so there a missing
// browser fails the tests instead of skipping them.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';

export function findChromium(): string | null {
  for (const c of [process.env.CHROME_PATH, process.env.CHROMIUM]) if (c && existsSync(c)) return c;
  for (const name of ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']) {
    for (const dir of (process.env.PATH ?? '').split(delimiter)) {
      if (dir && existsSync(join(dir, name))) return join(dir, name);
    }
  }
  return null;
}

/** node:test's `skip` option: false when a browser is there or CI requires one, else why the test is skipped. */
export function chromiumSkip(): string | false {
  if (findChromium() || process.env.DPO_REQUIRE_CHROMIUM === '1') return false;
  return 'no Chromium found (apt-get install chromium, or set CHROME_PATH)';
}

function browser(): string {
  const c = findChromium();
  if (!c) throw new Error('no Chromium found (apt-get install chromium, or set CHROME_PATH); DPO_REQUIRE_CHROMIUM=1 makes this a failure');
  return c;
}

function run(args: string[], page: string): { stdout: string; stderr: string } {
  const profile = mkdtempSync(join(tmpdir(), 'dpo-chromium-'));
  try {
    // no sandbox: CI runs as root in a container; no GPU, no /dev/shm assumptions
    const r = spawnSync(browser(), ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
      '--hide-scrollbars', `--user-data-dir=${profile}`, ...args, pathToFileURL(page).href], { encoding: 'utf8', timeout: 120_000 });
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`chromium exited with ${r.status}:\n${r.stderr}`);
    return { stdout: r.stdout, stderr: r.stderr };
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

const CONSOLE_LINE = /:CONSOLE(?::|\()\d+\)?\] (.*)$/;

/** Loads a local page: its DOM after the load event, and every console message it produced. */
export function loadPage(page: string): { dom: string; console: string[] } {
  const r = run(['--enable-logging=stderr', '--v=0', '--dump-dom'], page);
  const console = r.stderr.split('\n').map((l) => l.match(CONSOLE_LINE)?.[1]).filter((m): m is string => m !== undefined);
  return { dom: r.stdout, console };
}

/** A screenshot of the page in a window of the given size, written to `png`. */
export function screenshot(page: string, png: string, width = 1200, height = 900): void {
  run([`--screenshot=${png}`, `--window-size=${width},${height}`], page);
}

/** How many pixels of a PNG are not (near) white: a blank page has none. */
export async function nonWhitePixels(png: string): Promise<number> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let n = 0;
  for (let i = 0; i < data.length; i += info.channels) if (data[i]! < 240 || data[i + 1]! < 240 || data[i + 2]! < 240) n++;
  return n;
}
