// `diffusion-dpo compare` on the tiny pipeline: a base column and a trained-UNet column from the
// same prompts and seeds, and a self-contained page checked in headless Chromium when one is
// installed (Debian's `chromium`; CHROMIUM=path overrides).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import * as torch from '../src/torch/index.js';
import { loadUNet } from '../src/models/index.js';
import { saveComponent } from '../src/models/loading.js';
import { fixturesDir, projectRoot } from './helpers/fixtures.js';

const bin = join(projectRoot, 'bin', 'diffusion-dpo.js');
const dir = mkdtempSync(join(tmpdir(), 'dpo-compare-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const tinySd = join(fixturesDir, 'tiny-sd');
const out = join(dir, 'cmp');
const trained = join(dir, 'trained-unet');

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: projectRoot });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function findChromium(): string | null {
  for (const c of [process.env.CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']) {
    if (c && existsSync(c)) return c;
  }
  return null;
}

describe('compare', () => {
  before(() => {
    // a "trained" UNet: the tiny one with its output layer perturbed, saved as a folder
    const unet = loadUNet(join(tinySd, 'unet'));
    torch.noGrad(() => torch.tidy(() => unet.conv_out.bias!.add_(0.5)));
    saveComponent(trained, unet, 'UNet2DConditionModel');
    unet.dispose();
  });

  test('renders base and each UNet on the same prompts and seeds into one page', async () => {
    const r = cli('compare', '--pretrained_model_name_or_path', tinySd, '--unet', trained, '--label', 'dpo <run>',
      '--prompt', 'a red cube', '--prompt', 'a "quoted" dog & cat', '--num_inference_steps', '3', '--seed', '2', '--device', 'cpu', '--output_dir', out);
    assert.equal(r.code, 0, r.err);
    const report = JSON.parse(r.out) as { columns: string[]; images_per_column: number; page: string };
    assert.deepEqual(report.columns, ['base', 'dpo <run>']);
    assert.equal(report.images_per_column, 2);
    assert.deepEqual(readdirSync(out).sort(), ['00-base', '01-dpo_run_', 'index.html']);
    const base = await sharp(join(out, '00-base', '000-2.png')).raw().toBuffer();
    const dpo = await sharp(join(out, '01-dpo_run_', '000-2.png')).raw().toBuffer();
    assert.notDeepEqual(base, dpo); // a different UNet changes the image ...
    const again = cli('sample', '--pretrained_model_name_or_path', tinySd, '--prompt', 'a red cube', '--num_inference_steps', '3', '--seed', '2', '--device', 'cpu', '--output_dir', join(dir, 's'));
    assert.equal(again.code, 0, again.err);
    assert.ok(base.equals(await sharp(join(dir, 's', '000-2.png')).raw().toBuffer())); // ... and base is exactly `sample`'s
    const html = readFileSync(report.page, 'utf8');
    assert.equal((html.match(/<img /g) ?? []).length, 4);
    assert.equal((html.match(/src="data:image\/png;base64,/g) ?? []).length, 4);
    assert.match(html, /a &#34;quoted&#34; dog &#38; cat/);
    assert.match(html, /dpo &#60;run&#62;/);
    assert.doesNotMatch(html, /src="(?!data:)/); // self-contained
  });

  test('the page loads in headless Chromium with every image decoded and no console output', { skip: findChromium() ? false : 'no chromium installed (apt install chromium)' }, async () => {
    const chromium = findChromium()!;
    const page = `file://${join(out, 'index.html')}`;
    const common = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', `--user-data-dir=${join(dir, 'profile')}`];
    const dom = spawnSync(chromium, [...common, '--enable-logging=stderr', '--v=0', '--dump-dom', page], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(dom.status, 0, dom.stderr);
    assert.match(dom.stdout, /data-images-loaded="4\/4"/);
    assert.doesNotMatch(dom.stderr, /:CONSOLE[(:]\d+|Uncaught/); // "CONSOLE(12)]" before Chromium 120, "CONSOLE:12]" since
    const shot = join(out, 'screenshot.png');
    const s = spawnSync(chromium, [...common, `--screenshot=${shot}`, '--window-size=1000,700', page], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(s.status, 0, s.stderr);
    const meta = await sharp(shot).metadata();
    assert.deepEqual([meta.width, meta.height], [1000, 700]);
    const stats = await sharp(shot).stats();
    assert.ok(stats.channels.some((c) => c.stdev > 5), 'the screenshot is not blank');
  });

  test('bad flags are usage errors', () => {
    const noUnet = cli('compare', '--pretrained_model_name_or_path', tinySd, '--prompt', 'x');
    assert.equal(noUnet.code, 2);
    assert.match(noUnet.err, /give at least one --unet/);
    const labels = cli('compare', '--pretrained_model_name_or_path', tinySd, '--prompt', 'x', '--unet', trained, '--label', 'a', '--label', 'b');
    assert.equal(labels.code, 2);
    assert.match(labels.err, /2 --label for 1 --unet/);
    // a UNet that does not fit is refused before the base column is rendered: no partial output
    const misfit = join(dir, 'misfit');
    const sdxl = cli('compare', '--pretrained_model_name_or_path', tinySd, '--prompt', 'x', '--unet', trained, '--unet', join(fixturesDir, 'tiny-sdxl'), '--output_dir', misfit);
    assert.equal(sdxl.code, 2);
    assert.match(sdxl.err, /tiny-sdxl\/unet does not fit .*tiny-sd: it is an SDXL UNet/);
    assert.ok(!existsSync(misfit));
  });
});
