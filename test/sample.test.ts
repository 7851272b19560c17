// `diffusion-dpo sample` as a user runs it on the tiny fixture pipeline: files, metadata, grid,
// per-image seeds that regenerate any one image alone, and loud errors for bad flags.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import sharp from 'sharp';
import { readPngText, addPngText } from '../src/pipelines/png.js';
import { loadPromptSet, readPromptFile } from '../src/pipelines/prompts.js';
import { parquetWriteBuffer } from 'hyparquet-writer';
import * as torch from '../src/torch/index.js';
import { disposePipeline, loadPipeline } from '../src/models/index.js';
import { generate } from '../src/pipelines/text_to_image.js';
import { schedulerFromConfig } from '../src/schedulers/samplers.js';
import { CLIPTokenizer } from '../src/tokenizers/clip.js';
import { fixturesDir, projectRoot } from './helpers/fixtures.js';

const bin = join(projectRoot, 'bin', 'diffusion-dpo.js');
const dir = mkdtempSync(join(tmpdir(), 'dpo-sample-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const tinySd = join(fixturesDir, 'tiny-sd');

function sample(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, 'sample', '--pretrained_model_name_or_path', tinySd, '--device', 'cpu', ...args], { encoding: 'utf8', cwd: projectRoot });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('sample', () => {
  test('writes one PNG per image with its settings in text chunks, and a grid', async () => {
    const out = join(dir, 'a');
    const r = sample('--prompt', 'a red cube', '--prompt', 'a blue dog', '--num_images_per_prompt', '2', '--num_inference_steps', '3', '--seed', '5', '--output_dir', out);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /^device: cpu \(\d+ threads\)$/m);
    assert.deepEqual(readdirSync(out).sort(), ['000-5.png', '000-6.png', '001-5.png', '001-6.png', 'grid.png']);
    const meta = readPngText(readFileSync(join(out, '001-6.png')));
    assert.equal(meta.prompt, 'a blue dog');
    assert.equal(meta.seed, '6');
    assert.equal(meta.num_inference_steps, '3');
    assert.equal(meta.scheduler, 'PNDMScheduler');
    // tiny-sd: UNet sample_size 32, VAE scale factor 2 -> 64 px
    const img = await sharp(join(out, '000-5.png')).metadata();
    assert.deepEqual([img.width, img.height, img.channels], [64, 64, 3]);
    const grid = await sharp(join(out, 'grid.png')).metadata();
    assert.deepEqual([grid.width, grid.height], [128, 128]);
    // different prompts / seeds give different pixels
    const px = async (f: string) => sharp(join(out, f)).raw().toBuffer();
    assert.notDeepEqual(await px('000-5.png'), await px('000-6.png'));
    assert.notDeepEqual(await px('000-5.png'), await px('001-5.png'));
  });

  test('an image regenerated alone from its seed is bit-identical', async () => {
    const out = join(dir, 'b');
    const r = sample('--prompt', 'a blue dog', '--seed', '6', '--num_inference_steps', '3', '--scheduler', 'euler_ancestral', '--output_dir', out);
    assert.equal(r.code, 0, r.err);
    const again = join(dir, 'b2');
    const r2 = sample('--prompt', 'a red cube', '--prompt', 'a blue dog', '--seed', '5', '--num_images_per_prompt', '2', '--num_inference_steps', '3', '--scheduler', 'euler_ancestral', '--output_dir', again);
    assert.equal(r2.code, 0, r2.err);
    const a = await sharp(join(out, '000-6.png')).raw().toBuffer();
    const b = await sharp(join(again, '001-6.png')).raw().toBuffer();
    assert.ok(a.equals(b));
    assert.equal(readPngText(readFileSync(join(out, '000-6.png'))).scheduler, 'euler_ancestral');
    // --unet accepts a pipeline (or training checkpoint) folder holding unet/: same weights, same image
    const viaUnet = join(dir, 'b3');
    const r3 = sample('--prompt', 'a blue dog', '--seed', '6', '--num_inference_steps', '3', '--scheduler', 'euler_ancestral', '--unet', tinySd, '--output_dir', viaUnet);
    assert.equal(r3.code, 0, r3.err);
    assert.ok(a.equals(await sharp(join(viaUnet, '000-6.png')).raw().toBuffer()));
  });

  test('--torch_dtype bfloat16 runs the pipeline in bfloat16: close to float32, not equal', async () => {
    const f32 = join(dir, 'f32');
    const bf16 = join(dir, 'bf16');
    assert.equal(sample('--prompt', 'a red cube', '--num_inference_steps', '3', '--output_dir', f32).code, 0);
    const r = sample('--prompt', 'a red cube', '--num_inference_steps', '3', '--torch_dtype', 'bfloat16', '--output_dir', bf16);
    assert.equal(r.code, 0, r.err);
    assert.equal(readPngText(readFileSync(join(bf16, '000-0.png'))).torch_dtype, 'bfloat16');
    const a = await sharp(join(f32, '000-0.png')).raw().toBuffer();
    const b = await sharp(join(bf16, '000-0.png')).raw().toBuffer();
    let sum = 0;
    for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
    const mean = sum / a.length; // measured 2.0 of 255
    assert.ok(mean > 0 && mean < 8, `mean |f32 - bf16| = ${mean}`);
  });

  test('bad flags fail loudly before any work', () => {
    const noPrompt = sample();
    assert.equal(noPrompt.code, 2);
    assert.match(noPrompt.err, /give --prompt, --prompt_file or --prompts/);
    const badSteps = sample('--prompt', 'x', '--num_inference_steps', 'ten');
    assert.equal(badSteps.code, 2);
    assert.match(badSteps.err, /--num_inference_steps must be an integer, got 'ten'/);
    const zeroSteps = sample('--prompt', 'x', '--num_inference_steps', '0');
    assert.equal(zeroSteps.code, 2);
    assert.match(zeroSteps.err, /--num_inference_steps must be >= 1, got 0/);
    const badDtype = sample('--prompt', 'x', '--torch_dtype', 'float64');
    assert.equal(badDtype.code, 2);
    assert.match(badDtype.err, /--torch_dtype must be one of float32, float16, bfloat16; got 'float64'/);
    const badSet = sample('--prompts', 'no such set');
    assert.equal(badSet.code, 2);
    assert.match(badSet.err, /--prompts: prompt set 'no such set': not 'notebook'/);
    const badFile = sample('--prompt_file', join(dir, 'missing.txt'));
    assert.equal(badFile.code, 2);
    assert.match(badFile.err, /--prompt_file: .*missing\.txt/);
    const badScheduler = sample('--prompt', 'x', '--scheduler', 'heun', '--output_dir', join(dir, 'c'));
    assert.notEqual(badScheduler.code, 0);
    assert.match(badScheduler.err, /heun/);
    const badUnet = sample('--prompt', 'x', '--unet', dir, '--output_dir', join(dir, 'd'));
    assert.notEqual(badUnet.code, 0);
    assert.match(badUnet.err, /no UNet here/);
    // sizes and UNets are checked against the configs before the denoising loop, so nothing is written
    const oddHeight = sample('--prompt', 'x', '--height', '63', '--output_dir', join(dir, 'e'));
    assert.equal(oddHeight.code, 2);
    assert.match(oddHeight.err, /--height 63: .*tiny-sd needs a positive multiple of 4 .*the nearest are 60 and 64/);
    const sdxlUnet = sample('--prompt', 'x', '--unet', join(fixturesDir, 'tiny-sdxl'), '--output_dir', join(dir, 'f'));
    assert.equal(sdxlUnet.code, 2);
    assert.match(sdxlUnet.err, /does not fit .*tiny-sd: it is an SDXL UNet and the pipeline is SD 1\.x\/2\.x; its cross-attention width is 28, the text encoder gives 32/);
    for (const f of ['e', 'f']) assert.ok(!existsSync(join(dir, f)), `${f}: no output before the checks pass`);
    const badDevice = sample('--prompt', 'x', '--device', 'gpu', '--output_dir', join(dir, 'g'));
    assert.equal(badDevice.code, 2);
    assert.match(badDevice.err, /--device must be auto, cpu, cuda or cuda:N; got 'gpu'/);
    if (!torch.cuda.isAvailable()) {
      const noCuda = sample('--prompt', 'x', '--device', 'cuda:1', '--output_dir', join(dir, 'g'));
      assert.equal(noCuda.code, 2);
      assert.match(noCuda.err, /--device cuda:1: CUDA is not available to this libtorch/);
    }
    assert.ok(!existsSync(join(dir, 'g')));
  });

  test('a prompt longer than the tokenizer reads is reported as truncated', () => {
    const long = Array.from({ length: 90 }, (_, i) => `word${i}`).join(' ');
    const r = sample('--prompt', long, '--num_inference_steps', '1', '--output_dir', join(dir, 'long'));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /prompt 0 is \d+ tokens; the text encoder reads the first 77/);
  });

  test('prompt files: .txt lines, .jsonl/.json records or lists, .tsv/.csv/.parquet tables; bad rows named', async () => {
    const txt = join(dir, 'p.txt');
    writeFileSync(txt, 'one\n\n  two  \n');
    assert.deepEqual(await readPromptFile(txt), ['one', 'two']);
    const jsonl = join(dir, 'p.jsonl');
    writeFileSync(jsonl, '{"prompt": "a"}\n\n{"caption": "b"}\n');
    assert.deepEqual(await readPromptFile(jsonl), ['a', 'b']);
    writeFileSync(jsonl, '{"prompt": "a"}\n\n{"caption": "b"}\n{"image": "c"}\n');
    await assert.rejects(readPromptFile(jsonl), /p\.jsonl:4: no prompt/);
    writeFileSync(jsonl, '{"prompt": "a"}\n{"prompt": \n');
    await assert.rejects(readPromptFile(jsonl), /p\.jsonl:2: not valid JSON/);
    const json = join(dir, 'anime.json'); // HPSv2's benchmark files: a list of strings
    writeFileSync(json, JSON.stringify(['a cat, anime style', 'a dog, anime style']));
    assert.deepEqual(await readPromptFile(json), ['a cat, anime style', 'a dog, anime style']);
    const tsv = join(dir, 'PartiPrompts.tsv'); // PartiPrompts' layout, with a quote inside a prompt
    writeFileSync(tsv, 'Prompt\tCategory\tChallenge\tNote\nbond\tAbstract\tBasic\t\na "big" red apple\tFood\tBasic\tx\n');
    assert.deepEqual(await readPromptFile(tsv), ['bond', 'a "big" red apple']);
    const csv = join(dir, 'p.csv');
    writeFileSync(csv, 'id,text\n1,"hello, world"\n');
    assert.deepEqual(await readPromptFile(csv), ['hello, world']);
    writeFileSync(csv, 'id,name\n1,x\n');
    await assert.rejects(readPromptFile(csv), /p\.csv: row 2: no prompt/);
    const parquet = join(dir, 'train-00000-of-00001.parquet');
    writeFileSync(parquet, Buffer.from(parquetWriteBuffer({ columnData: [
      { name: 'Prompt', data: ['p one', 'p two'], type: 'STRING' }, { name: 'Category', data: ['A', 'B'], type: 'STRING' },
    ] })));
    assert.deepEqual(await readPromptFile(parquet), ['p one', 'p two']);
  });

  test('prompt sets: notebook, a folder, and a Hub dataset (with subfolder) from the on-disk cache', async () => {
    assert.equal((await loadPromptSet('notebook')).length, 16);
    const folder = join(dir, 'set');
    mkdirSync(join(folder, 'b'), { recursive: true });
    writeFileSync(join(folder, 'a.txt'), 'first\n');
    writeFileSync(join(folder, 'b', 'c.json'), '["second"]');
    writeFileSync(join(folder, 'README.md'), '# not prompts');
    assert.deepEqual(await loadPromptSet(folder), ['first', 'second']);
    // the Hugging Face cache layout: datasets--org--name/{refs/main, snapshots/<commit>/...}
    const cache = join(dir, 'hf');
    const commit = 'a'.repeat(40);
    const snap = join(cache, 'datasets--org--prompts', 'snapshots', commit);
    mkdirSync(join(snap, 'benchmark'), { recursive: true });
    mkdirSync(join(cache, 'datasets--org--prompts', 'refs'), { recursive: true });
    writeFileSync(join(cache, 'datasets--org--prompts', 'refs', 'main'), commit);
    writeFileSync(join(snap, 'benchmark', 'photo.json'), '["a photo"]');
    writeFileSync(join(snap, 'train.jsonl'), '{"prompt": "train row"}\n');
    assert.deepEqual(await loadPromptSet('org/prompts:benchmark', { cacheDir: cache }), ['a photo']);
    assert.deepEqual(await loadPromptSet('org/prompts', { cacheDir: cache }), ['a photo', 'train row']);
    await assert.rejects(loadPromptSet('not a set!'), /prompt set 'not a set!': not 'notebook', parti, hpsv2, a file, a folder or a Hub dataset id/);
  });

  test('PNG text chunks round-trip and keep the image decodable', async () => {
    const png = await sharp({ create: { width: 2, height: 2, channels: 3, background: '#ff0000' } }).png().toBuffer();
    const tagged = addPngText(png, { prompt: 'ünïcode prompt', seed: '3', ja: '犬の写真 🐕' });
    assert.deepEqual(readPngText(tagged), { prompt: 'ünïcode prompt', seed: '3', ja: '犬の写真 🐕' });
    const back = await sharp(tagged).metadata();
    assert.equal(back.width, 2);
    const raw = await sharp(tagged).raw().toBuffer();
    assert.deepEqual([...raw.subarray(0, 3)], [255, 0, 0]);
  });

  test('precomputed prompt embeddings (diffusers prompt_embeds) give the same image as the prompts', () => {
    const p = loadPipeline(tinySd);
    try {
      const scheduler = () => schedulerFromConfig(JSON.parse(readFileSync(join(tinySd, 'scheduler', 'scheduler_config.json'), 'utf8')) as Record<string, unknown>);
      const tokenizer = CLIPTokenizer.fromFolder(join(tinySd, 'tokenizer'));
      const base = { numInferenceSteps: 2, guidanceScale: 7.5, height: 32, width: 32 };
      torch.tidy(() => {
        const a = generate({ pipeline: p, scheduler: scheduler(), tokenizer, tokenizer2: null }, { ...base, prompts: ['a red cube'], generator: new torch.Generator('cpu', 1) });
        const b = generate({ pipeline: p, scheduler: scheduler(), tokenizer: null, tokenizer2: null }, {
          ...base, prompts: [''], embeds: { prompt: a.promptEmbeds, negative: a.negativePromptEmbeds }, generator: new torch.Generator('cpu', 1),
        });
        assert.equal(a.images.sub(b.images).abs().max().item(), 0);
        assert.throws(() => generate({ pipeline: p, scheduler: scheduler(), tokenizer: null, tokenizer2: null }, {
          ...base, prompts: [''], embeds: { prompt: a.promptEmbeds, negative: null },
        }), /embeds\.negative is required when guidance_scale > 1/);
      });
    } finally {
      disposePipeline(p);
    }
  });
});
