// Benchmark: the reward models' scoring in images/s, ours against the Python reference on the same
// libtorch: PickScore and the aesthetics scorer against transformers 4.57 (CLIPModel with its
// CLIPImageProcessor and CLIPTokenizerFast), the open_clip scorer (HPSv2 / HPSv2.1 / CLIP) against
// open_clip 3.3. Two modes: "forward" (the model on a fixed preprocessed batch and fixed token ids:
// image tower, text tower, similarity or head) and "e2e" (Scorer.score from decoded 8-bit RGB
// images and prompts: preprocessing, tokenising, the forward, the scores read back); batch sizes 1
// and 8; configs tiny (the fixtures' tiny-clip) and mid (ViT-B/32 shapes, random weights written
// once by the Python side and loaded by both). Rounds interleave Python and ours; each figure is
// the best of N timed runs, each run long enough to time (DPO_BENCH_MIN_SECONDS), over all rounds.
//
//   npm run build && DPO_TRANSFORMERS_PYTHONPATH=<transformers 4.57 + deps> \
//     [DPO_OPEN_CLIP_PYTHONPATH=<open_clip 3.3 + torchvision transforms>] node dist/bench/scorers.js
//
// Environment: DPO_PYTHON, DPO_BENCH_ROUNDS (3), DPO_BENCH_REPEATS (3), DPO_BENCH_MIN_SECONDS
// (0.3), DPO_BENCH_THREADS (all cores), DPO_BENCH_BATCHES ("1,8"), FIXTURES_DIR.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as torch from '../src/torch/index.js';
import { loadCLIPModel, type CLIPModel, type OpenClipModel } from '../src/models/index.js';
import { decodeForScoring } from '../src/data/decode.js';
import type { RawImage } from '../src/data/pil_resize.js';
import { AestheticsHead } from '../src/scoring/aesthetics_head.js';
import { loadScorer } from '../src/scoring/load.js';
import { preprocessBatch } from '../src/scoring/preprocess.js';
import { AestheticsScorer, OpenClipScorer, PickScoreScorer, tokenizeLongest, tokenizeOpenClip } from '../src/scoring/scorers.js';
import type { ScoreInput, Scorer } from '../src/scoring/types.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixtures = process.env.FIXTURES_DIR ?? join(root, '..', 'shared', 'fixtures');
const work = join(root, 'bench', 'results', 'scorers');
const rounds = Number(process.env.DPO_BENCH_ROUNDS ?? 3);
const repeats = Number(process.env.DPO_BENCH_REPEATS ?? 3);
const minSeconds = Number(process.env.DPO_BENCH_MIN_SECONDS ?? 0.3);
const threads = Number(process.env.DPO_BENCH_THREADS ?? availableParallelism());
const batches = (process.env.DPO_BENCH_BATCHES ?? '1,8').split(',').map(Number);
const cfg = JSON.parse(readFileSync(join(root, 'bench', 'scorers_config.json'), 'utf8')) as { prompts: string[] };
const tokenizerDir = join(fixtures, 'tokenizer');
const CONFIGS = ['tiny', 'mid'] as const;
type Config = (typeof CONFIGS)[number];
const clipFolder = (c: Config) => (c === 'tiny' ? join(fixtures, 'tiny-clip') : join(work, 'clip-mid'));

interface PyRun {
  torch: string;
  transformers: string;
  open_clip?: string;
  threads: number;
  results: Record<string, number>;
  scores: Record<string, number[]>;
}

function pythonEnv(): NodeJS.ProcessEnv {
  const tf = process.env.DPO_TRANSFORMERS_PYTHONPATH;
  if (!tf) throw new Error('set DPO_TRANSFORMERS_PYTHONPATH to a folder holding transformers 4.57 and its dependencies (see docs/benchmarks.md)');
  const paths = [tf, process.env.DPO_OPEN_CLIP_PYTHONPATH].filter((p): p is string => !!p);
  return { ...process.env, PYTHONPATH: paths.join(':') };
}

function python(args: string[]): string {
  const r = spawnSync(process.env.DPO_PYTHON ?? 'python3', [join(root, 'bench', 'scorers_reference.py'), ...args], { encoding: 'utf8', env: pythonEnv(), maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`the Python reference failed: ${r.stderr}`);
  return r.stdout;
}

/** images/s: two warm-up calls, then the best of `repeats` timed runs of n calls each (a run lasts >= minSeconds). */
async function measure(fn: () => unknown, images: number): Promise<number> {
  await fn();
  let t0 = performance.now();
  await fn();
  const once = (performance.now() - t0) / 1000;
  const n = Math.max(1, Math.ceil(minSeconds / Math.max(once, 1e-9)));
  let best = Infinity;
  for (let r = 0; r < repeats; r++) {
    t0 = performance.now();
    for (let i = 0; i < n; i++) await fn();
    best = Math.min(best, (performance.now() - t0) / 1000 / n);
  }
  return images / best;
}

function aestheticsHead(config: Config, width: number): AestheticsHead {
  const head = new AestheticsHead(width, { device: 'meta' });
  const file = join(work, `aesthetics-head-${config}.safetensors`);
  torch.tidy(() => head.loadStateDict(torch.loadSafetensors(file), { assign: true, device: 'cpu', dtype: 'float32', what: file }));
  return head.eval();
}

async function ours(images: RawImage[], withOpenClip: boolean): Promise<{ results: Record<string, number>; scores: Record<string, number[]> }> {
  torch.setNumThreads(threads);
  const results: Record<string, number> = {};
  const scores: Record<string, number[]> = {};
  const maxBatch = Math.max(...batches);
  const inputs: ScoreInput[] = images.map((image, i) => ({ image, prompt: cfg.prompts[i]! }));
  const kept: torch.Tensor[] = [];
  const keep = (t: torch.Tensor) => (kept.push(t.keep()), t);
  const run = async (scorer: Scorer, config: Config, forward: (b: number) => () => unknown) => {
    for (const b of batches) {
      results[`${scorer.name === 'clip' ? 'open_clip' : scorer.name}/${config}/${b}/forward`] = await measure(forward(b), b);
      results[`${scorer.name === 'clip' ? 'open_clip' : scorer.name}/${config}/${b}/e2e`] = await measure(() => scorer.score(inputs.slice(0, b)), b);
    }
    scores[`${scorer.name === 'clip' ? 'open_clip' : scorer.name}/${config}`] = await scorer.score(inputs.slice(0, maxBatch));
    kept.splice(0).forEach((t) => t.dispose());
  };

  for (const config of CONFIGS) {
    // PickScore, as `score --scorer pickscore --model <folder>` loads it
    const pick = await loadScorer('pickscore', { model: clipFolder(config), processor: tokenizerDir, batchSize: maxBatch }) as PickScoreScorer;
    const model: CLIPModel = pick.model;
    await run(pick, config, (b) => {
      const pixels = keep(preprocessBatch(images.slice(0, b), pick.c.preprocess));
      const { ids, mask } = tokenizeLongest(pick.tokenizer, cfg.prompts.slice(0, b), 'cpu');
      keep(ids);
      keep(mask);
      return () => torch.tidy(() => torch.noGrad(() => {
        const image = torch.F.normalize(model.imageFeatures(pixels).float(), 2, -1);
        const text = torch.F.normalize(model.textFeatures(ids, { attentionMask: mask }).float(), 2, -1);
        return image.mul(text).sum(-1).mul(model.logit_scale.float().exp()).toArray();
      }));
    });
    // aesthetics: the same CLIPModel's image tower into a head of its projection width (the bundled
    // head reads ViT-L/14's 768; these configs project to 24 and 512)
    const head = aestheticsHead(config, model.config.projectionDim);
    const aes = new AestheticsScorer({ ...pick.c, name: 'aesthetics', description: 'bench' }, model, head);
    await run(aes, config, (b) => {
      const pixels = keep(preprocessBatch(images.slice(0, b), aes.c.preprocess));
      return () => torch.tidy(() => torch.noGrad(() => {
        const e = model.imageFeatures(pixels).float();
        return head.forward(e.div(e.norm(2, [-1], true))).flatten().toArray();
      }));
    });
    aes.dispose(); // the model and the head
  }

  if (withOpenClip) {
    for (const config of CONFIGS) {
      const oc = await loadScorer('clip', { model: join(work, `open_clip-${config}`), processor: tokenizerDir, batchSize: maxBatch }) as OpenClipScorer;
      const model: OpenClipModel = oc.model;
      await run(oc, config, (b) => {
        const pixels = keep(preprocessBatch(images.slice(0, b), oc.c.preprocess));
        const tokens = keep(tokenizeOpenClip(oc.tokenizer, cfg.prompts.slice(0, b), model.config.text.contextLength, 'cpu'));
        return () => torch.tidy(() => torch.noGrad(() => {
          const image = model.encodeImage(pixels, { normalize: true }).float();
          const text = model.encodeText(tokens, { normalize: true }).float();
          return image.mul(text).sum(-1).toArray();
        }));
      });
      oc.dispose();
    }
  }
  return { results, scores };
}

// the inputs: written once by the Python side, decoded here (not timed) as `score` decodes
mkdirSync(work, { recursive: true });
python(['prepare', work, fixtures]);
const images = await Promise.all(Array.from({ length: 8 }, (_, i) => decodeForScoring(readFileSync(join(work, 'images', `${i}.png`)))));
// checks that the mid folder is what the Python side wrote and that our CLIPModel reads it
loadCLIPModel(clipFolder('mid')).dispose();

const pyRuns: PyRun[] = [];
const ourRuns: Awaited<ReturnType<typeof ours>>[] = [];
for (let r = 0; r < rounds; r++) {
  const t0 = performance.now();
  pyRuns.push(JSON.parse(python(['run', work, fixtures, String(threads), String(repeats), String(minSeconds), batches.join(',')]).trim().split('\n').pop()!) as PyRun);
  const t1 = performance.now();
  ourRuns.push(await ours(images, pyRuns[0]!.open_clip !== undefined));
  console.error(`round ${r + 1}/${rounds}: Python ${((t1 - t0) / 1000).toFixed(0)} s, ours ${((performance.now() - t1) / 1000).toFixed(0)} s`);
}

const py0 = pyRuns[0]!;
const keys = Object.keys(ourRuns[0]!.results);
const max = (xs: number[]) => Math.max(...xs);
const rows = keys.map((k) => {
  const [scorer, config, batch, mode] = k.split('/') as [string, string, string, string];
  const o = max(ourRuns.map((r) => r.results[k]!));
  const p = max(pyRuns.map((r) => r.results[k]!));
  return { scorer, config, batch: Number(batch), mode, ours: o, python: p, ratio: o / p };
});
const scoreDiff = Object.fromEntries(Object.keys(ourRuns[0]!.scores).map((k) => {
  const a = ourRuns[0]!.scores[k]!;
  const b = py0.scores[k]!;
  return [k, Math.max(...a.map((v, i) => Math.abs(v - b[i]!)))];
}));

console.log(`scorer benchmark: libtorch ${torch.buildInfo().torchVersion} (ours) / torch ${py0.torch}, transformers ${py0.transformers}` +
  `${py0.open_clip ? `, open_clip ${py0.open_clip}` : ''}; ${cpus()[0]?.model ?? 'CPU'}, ${threads} threads (Python: ${py0.threads}); ` +
  `best of ${repeats} runs x ${rounds} interleaved rounds; images/s, ratio = ours / Python (above 1: ours faster)\n`);
console.log('scorer'.padEnd(12) + 'config'.padEnd(8) + 'batch'.padStart(6) + '  ' + 'mode'.padEnd(9) + 'ours'.padStart(10) + 'Python'.padStart(10) + 'ratio'.padStart(8));
for (const r of rows) {
  console.log(r.scorer.padEnd(12) + r.config.padEnd(8) + String(r.batch).padStart(6) + '  ' + r.mode.padEnd(9) +
    r.ours.toFixed(1).padStart(10) + r.python.toFixed(1).padStart(10) + r.ratio.toFixed(2).padStart(8));
}
console.log('\nlargest |ours - Python| of the e2e scores (batch ' + Math.max(...batches) + '): ' +
  Object.entries(scoreDiff).map(([k, v]) => `${k} ${v.toExponential(1)}`).join(', '));
writeFileSync(join(root, 'bench', 'results', 'scorers.json'), JSON.stringify({ date: new Date().toISOString(), cpu: cpus()[0]?.model, threads, rounds, repeats, minSeconds, rows, scoreDiff, pyRuns, ourRuns }, null, 1));
