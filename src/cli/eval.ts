// `diffusion-dpo eval`: the base pipeline and each trained UNet or LoRA on the same prompts and
// seeds, every image scored by every reward model asked for; the means, medians and win rates
// over the base (with bootstrap intervals over prompts) go to eval.json and eval.html. Images
// already in the output folder that were made with the same weights and settings are reused, so a
// run can be resumed, or repeated with another scorer, without rendering again.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { checkRepoId, resolveModel } from '../hub/index.js';
import { disposePipeline, loadPipeline, readPipelineShape, type LoraComponent } from '../models/index.js';
import { writeFileAtomic } from '../models/loading.js';
import { evalHtml } from '../eval/html.js';
import { PROTOCOL_NAMES, resolveProtocol, type ProtocolName } from '../eval/protocol.js';
import { BASE_LABEL, buildEvalReport, type EvalModel } from '../eval/report.js';
import { reuseMismatch, weightsFingerprint, type WeightsSource } from '../eval/reuse.js';
import { scoreFiles } from '../eval/score.js';
import { loadScorer } from '../scoring/load.js';
import { SCORER_NAMES, type Scorer, type ScorerName, type ScorerOptions } from '../scoring/types.js';
import { createScheduler, type SchedulerName } from '../schedulers/samplers.js';
import { flagsHelp } from '../util/flags.js';
import { parseCommandFlags } from './args.js';
import { CliError } from './errors.js';
import { checkLoraPath, LORA_SCALE_FLAG, mergeLoraIntoPipeline, reloadComponents } from './lora_flags.js';
import type { Command } from './main.js';
import { SAMPLING_FLAGS, checkBeforeSampling, readSamplingSettings, renderImages, reportDevice, swapUNet, unetFolder } from './sampling_flags.js';

// --seeds replaces --num_images_per_prompt; steps, guidance and scheduler default to the protocol's
const { num_images_per_prompt: _perPrompt, ...SHARED_SAMPLING_FLAGS } = SAMPLING_FLAGS;

const EVAL_FLAGS = {
  ...SHARED_SAMPLING_FLAGS,
  num_inference_steps: { type: 'int', default: null, min: 1, valueName: 'N', help: 'denoising steps (default: the protocol\'s)' },
  guidance_scale: { type: 'float', default: null, valueName: 'G', help: 'classifier-free guidance (default: the protocol\'s)' },
  scheduler: { type: 'string', default: null, valueName: 'NAME', help: 'ddpm, ddim, pndm, euler, euler_ancestral, dpmpp_2m, dpmpp_2m_karras (default: the protocol\'s)' },
  output_dir: { type: 'string', default: null, valueName: 'E', help: 'where images, eval.json and eval.html go (default eval/); images there made with the same weights and settings are reused' },
  unet: { type: 'string', default: null, multiple: true, valueName: 'U', help: 'a trained UNet: folder with config.json, or a folder/Hub id with unet/ (repeatable)' },
  lora: { type: 'string', default: null, multiple: true, valueName: 'L', help: 'a LoRA file or folder, merged into the base pipeline as a model of its own (repeatable)' },
  label: { type: 'string', default: null, multiple: true, valueName: 'L', help: 'a name per --unet then per --lora, in order (default: the folder or file name)' },
  ...LORA_SCALE_FLAG,
  protocol: { type: 'string', default: 'paper', choices: PROTOCOL_NAMES, valueName: 'P', help: 'paper (the reference notebook: the pipeline\'s scheduler, 50 steps, guidance 7.5 SD / 5.0 SDXL) or spo (DDIM, 20 steps, guidance 5); flags override' },
  seeds: { type: 'int', default: null, min: 1, valueName: 'N', help: 'seeds per prompt: --seed, --seed+1, ... (default: the protocol\'s, 1)' },
  scorers: { type: 'string', default: null, valueName: 'LIST', help: `comma-separated reward models: ${SCORER_NAMES.join(', ')}` },
  scorer_model: { type: 'string', default: null, multiple: true, valueName: 'NAME=PATH', help: 'a scorer\'s model: a local folder or file, or a Hub id (repeatable; default: the reference\'s)' },
  scorer_processor: { type: 'string', default: null, multiple: true, valueName: 'NAME=PATH', help: 'where a scorer\'s tokenizer and image-processor files are when not beside its model (repeatable)' },
  scorer_batch_size: { type: 'int', default: 16, min: 1, valueName: 'N', help: 'images per scorer forward pass' },
  bootstrap_resamples: { type: 'int', default: 2000, min: 1, valueName: 'N', help: 'bootstrap resamples of the prompts for the win-rate intervals' },
  bootstrap_seed: { type: 'int', default: 0, min: 0, valueName: 'S', help: 'seed of the bootstrap\'s generator' },
} as const;

const HELP = `usage: diffusion-dpo eval --pretrained_model_name_or_path M [--unet U ...] [--lora L ...] (--prompts SET | --prompt P ... | --prompt_file F) --scorers LIST [options]

Renders every prompt with seeds --seed, --seed+1, ... (--seeds of them) with the base pipeline, each
--unet and each --lora; scores every image with every scorer; writes <output_dir>/eval.json (settings,
protocol, scorers, each model's mean and median, each trained model's win rate over the base with a
95% bootstrap interval over prompts, per-prompt rows) and eval.html (images linked from
<output_dir>/images/, summary, win-rate plot, sortable per-prompt table, gallery).

options:
${flagsHelp(EVAL_FLAGS, { width: 30 })}

docs/eval.md has the protocols, the statistics and the files.`;

/** A folder-safe name. */
const slug = (s: string) => s.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '') || 'model';

/** Bootstrap coverage of the reported intervals. */
const LEVEL = 0.95;

/** Where the prompts came from, in the order they were read. */
function promptSources(given: number, file: string | null, set: string | null): string {
  return [given ? `${given} --prompt` : '', file ? `--prompt_file ${file}` : '', set ? `--prompts ${set}` : ''].filter(Boolean).join(', ');
}

export type LoadScorer = (name: ScorerName, o: ScorerOptions) => Promise<Scorer>;

function parseScorers(list: string | null): ScorerName[] {
  if (!list) throw new CliError(`--scorers is required: a comma-separated list of ${SCORER_NAMES.join(', ')}`, 2);
  const names = list.split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new CliError(`--scorers '${list}': name at least one of ${SCORER_NAMES.join(', ')}`, 2);
  for (const n of names) if (!(SCORER_NAMES as readonly string[]).includes(n)) throw new CliError(`--scorers: unknown scorer '${n}' (scorers: ${SCORER_NAMES.join(', ')})`, 2);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new CliError(`--scorers names ${dup} twice`, 2);
  return names as ScorerName[];
}

/** NAME=PATH pairs of --scorer_model / --scorer_processor, for scorers of the run, each a path here or a Hub id. */
function parseScorerPaths(flag: string, entries: string[], scorers: ScorerName[]): Map<ScorerName, string> {
  const out = new Map<ScorerName, string>();
  for (const e of entries) {
    const eq = e.indexOf('=');
    const name = e.slice(0, eq) as ScorerName;
    const path = e.slice(eq + 1);
    if (eq <= 0 || !path) throw new CliError(`--${flag} '${e}': expected NAME=PATH, e.g. pickscore=path/to/model`, 2);
    if (!scorers.includes(name)) throw new CliError(`--${flag} ${name}: not one of --scorers (${scorers.join(', ')})`, 2);
    if (out.has(name)) throw new CliError(`--${flag} names ${name} twice`, 2);
    if (!existsSync(path)) {
      try {
        checkRepoId(path);
      } catch {
        throw new CliError(`--${flag} ${name}=${path}: no such file or folder, and not a Hub id`, 2);
      }
    }
    out.set(name, path);
  }
  return out;
}

interface Column {
  model: EvalModel;
  /** resolved --unet folder */
  unetPath?: string;
  lora?: string;
  /** PNG text chunks this run writes, besides prompt and seed */
  tags: Record<string, string>;
  size: { width: number; height: number };
  /** files[prompt][seed], absolute */
  files: string[][];
  /** the files to render (not reusable) */
  todo: Set<string>;
}

export function makeEvalCommand(deps: { loadScorer: LoadScorer }): Command {
  return {
    summary: 'score base vs trained UNets and LoRAs with reward models: means, win rates with intervals, eval.json and eval.html',
    async run(argv) {
      const { values, given } = parseCommandFlags('eval', EVAL_FLAGS, argv);
      if (values.help) {
        console.log(HELP);
        return 0;
      }
      // every check that needs no model comes first: a mistake costs nothing
      if (!values.pretrained_model_name_or_path) throw new CliError(`--pretrained_model_name_or_path is required\n\n${HELP}`, 2);
      const scorerNames = parseScorers(values.scorers);
      const scorerModels = parseScorerPaths('scorer_model', values.scorer_model, scorerNames);
      const scorerProcessors = parseScorerPaths('scorer_processor', values.scorer_processor, scorerNames);
      const unets = values.unet;
      const loras = values.lora;
      const labels = values.label;
      const sources = [...unets, ...loras];
      if (labels.length > 0 && labels.length !== sources.length) throw new CliError(`${labels.length} --label for ${sources.length} --unet and --lora: give one per model, or none`, 2);
      if (given.has('lora_scale') && loras.length === 0) throw new CliError('--lora_scale applies to --lora', 2);
      for (const l of loras) checkLoraPath(l);
      const names = [BASE_LABEL, ...sources.map((u, i) => labels[i] ?? basename(u.replace(/[/\\]+$/, '')))];
      names.forEach((n, i) => {
        const j = names.findIndex((m, k) => k < i && (m === n || slug(m) === slug(n)));
        if (j >= 0) throw new CliError(`two models would be named '${n}'${j === 0 ? ` ('${BASE_LABEL}' is the base pipeline)` : ''}: give each --unet and --lora a distinct --label`, 2);
      });
      const protocol = resolveProtocol(values.protocol as ProtocolName, {
        num_inference_steps: values.num_inference_steps, guidance_scale: values.guidance_scale, scheduler: values.scheduler, seeds: values.seeds,
      });
      const s0 = await readSamplingSettings({
        ...values, num_inference_steps: protocol.steps, guidance_scale: protocol.guidanceScale, scheduler: protocol.scheduler, num_images_per_prompt: protocol.seeds,
      });
      const out = values.output_dir ?? 'eval';
      const model = values.pretrained_model_name_or_path;
      const modelPath = await resolveModel(model, { revision: values.revision ?? undefined });
      const unetPaths = await Promise.all(unets.map((u) => resolveModel(u)));
      checkBeforeSampling(modelPath, unetPaths, s0);
      const schedulerConfig = JSON.parse(readFileSync(join(modelPath, 'scheduler', 'scheduler_config.json'), 'utf8')) as Record<string, unknown>;
      if (s0.scheduler) {
        try {
          createScheduler(s0.scheduler as SchedulerName, schedulerConfig).dispose();
        } catch (e) {
          throw new CliError(`--scheduler: ${(e as Error).message}`, 2);
        }
      }
      const shape = readPipelineShape(modelPath);
      // the family's guidance resolved here, so the report and the PNGs say the number
      const s = { ...s0, guidanceScale: s0.guidanceScale ?? (shape.kind === 'sdxl' ? 5.0 : 7.5) };
      reportDevice(s, values.device);
      const overridden = Object.entries(protocol.overridden).map(([k, v]) => `${k} ${v.protocol} -> ${v.used}`);
      console.error(`protocol ${protocol.name}: ${protocol.description}${overridden.length ? `; overridden: ${overridden.join(', ')}` : ''}`);

      // what each model's images must record to be reused
      const seeds = Array.from({ length: s.perPrompt }, (_, k) => s.seed + k);
      const schedulerName = s.scheduler ?? String(schedulerConfig._class_name);
      const vaeFactor = 2 ** (shape.vae.blockOutChannels.length - 1);
      const common = {
        negative_prompt: s.negativePrompt ?? '', num_inference_steps: String(s.steps), guidance_scale: String(s.guidanceScale),
        guidance_rescale: String(s.guidanceRescale), scheduler: schedulerName, torch_dtype: s.dtype,
      };
      const baseWeights: WeightsSource = { pipeline: modelPath };
      const columns: Column[] = names.map((label, c) => {
        const kind = c === 0 ? 'base' : c <= unets.length ? 'unet' : 'lora';
        const unetPath = kind === 'unet' ? unetPaths[c - 1]! : undefined;
        const lora = kind === 'lora' ? loras[c - 1 - unets.length]! : undefined;
        const weights = weightsFingerprint([baseWeights, ...(unetPath ? [{ folder: unetFolder(unetPath) }] : []), ...(lora ? [{ file: checkLoraPath(lora) }] : [])]);
        const unetConfig = unetPath ? readPipelineShape(modelPath, { unetFolder: unetFolder(unetPath) }).unet : shape.unet;
        const side = (unetConfig.sampleSize ?? 64) * vaeFactor;
        const folder = join('images', slug(label));
        const files = s.prompts.map((_, pi) => seeds.map((seed) => join(out, folder, `${String(pi).padStart(3, '0')}-${seed}.png`)));
        return {
          model: { label, kind, source: c === 0 ? model : sources[c - 1]!, folder },
          unetPath, lora,
          tags: {
            model, unet: kind === 'unet' ? unets[c - 1]! : '', lora: lora ?? '', lora_scale: lora ? String(values.lora_scale) : '',
            weights, device: s.device.split(':')[0]!,
          },
          size: { width: s.width ?? side, height: s.height ?? side },
          files, todo: new Set<string>(),
        };
      });
      // the model's path may be spelled differently between runs: the weights decide, not the names
      const compared = ['prompt', 'seed', 'weights', 'lora_scale', 'device', ...Object.keys(common)];
      let reused = 0;
      for (const col of columns) {
        const reasons = new Map<string, number>();
        s.prompts.forEach((prompt, pi) => seeds.forEach((seed, k) => {
          const expected: Record<string, string> = { prompt, seed: String(seed), ...col.tags, ...common };
          const why = reuseMismatch(col.files[pi]![k]!, Object.fromEntries(compared.map((key) => [key, expected[key]!])), col.size);
          if (why === null) reused++;
          else {
            col.todo.add(col.files[pi]![k]!);
            if (why !== 'missing') reasons.set(why, (reasons.get(why) ?? 0) + 1);
          }
        }));
        const total = s.prompts.length * seeds.length;
        const redo = [...reasons].map(([why, n]) => `${n} made differently (${why})`).join('; ');
        console.error(`[${col.model.label}] ${total - col.todo.size} of ${total} images already in ${join(out, col.model.folder)}${redo ? `; rendering again: ${redo}` : ''}`);
      }

      const rendered = columns.reduce((n, c) => n + c.todo.size, 0);
      if (rendered > 0) {
        const p = loadPipeline(modelPath, { device: s.device, dtype: s.dtype });
        try {
          // the components that differ from the base pipeline's, reloaded before the next model
          let changed: LoraComponent[] = [];
          for (const col of columns) {
            if (col.todo.size === 0) continue;
            if (col.unetPath) {
              reloadComponents(p, modelPath, changed.filter((x) => x !== 'unet'), s);
              swapUNet(p, col.unetPath, s);
              changed = ['unet'];
            } else {
              reloadComponents(p, modelPath, changed, s);
              changed = col.lora ? mergeLoraIntoPipeline(p, col.lora, values.lora_scale, (m) => console.error(`[${col.model.label}] ${m}`)) : [];
            }
            await renderImages(p, modelPath, s, join(out, col.model.folder), col.tags, col.model.label, (file) => !col.todo.has(file));
          }
        } finally {
          disposePipeline(p);
        }
      }

      // one scorer in memory at a time: each is a large CLIP
      const scores: Record<string, number[][][]> = {};
      const scorerInfo: { name: string; description: string }[] = [];
      const items = columns.flatMap((col) => s.prompts.flatMap((prompt, pi) => seeds.map((_, k) => ({ file: col.files[pi]![k]!, prompt }))));
      for (const name of scorerNames) {
        const scorer = await deps.loadScorer(name, {
          model: scorerModels.get(name), processor: scorerProcessors.get(name), device: s.device, batchSize: values.scorer_batch_size,
        });
        let flat: number[];
        try {
          flat = await scoreFiles(scorer, items, { chunk: Math.max(64, values.scorer_batch_size), log: (m) => console.error(`[${name}] ${m}`) });
          scorerInfo.push({ name, description: scorer.description });
        } finally {
          scorer.dispose();
        }
        let i = 0;
        scores[name] = columns.map(() => s.prompts.map(() => seeds.map(() => flat[i++]!)));
      }

      const base = columns[0]!;
      const report = buildEvalReport({
        created: new Date().toISOString(),
        command: ['diffusion-dpo', 'eval', ...argv],
        prompts: s.prompts, seeds,
        models: columns.map((c) => c.model),
        files: columns.map((c) => c.files.map((row) => row.map((f) => relative(out, f)))),
        scorers: scorerInfo, scores,
        bootstrap: { resamples: values.bootstrap_resamples, seed: values.bootstrap_seed, level: LEVEL },
        settings: {
          pretrained_model_name_or_path: model, revision: values.revision, prompts: promptSources(values.prompt.length, values.prompt_file, values.prompts),
          prompt_count: s.prompts.length, seeds: seeds.length, seed: s.seed, num_inference_steps: s.steps, guidance_scale: s.guidanceScale,
          guidance_rescale: s.guidanceRescale, scheduler: schedulerName, height: base.size.height, width: base.size.width,
          negative_prompt: s.negativePrompt, torch_dtype: s.dtype, device: s.device, ...(loras.length ? { lora_scale: values.lora_scale } : {}),
        },
        protocol: { name: protocol.name, description: protocol.description, preset: protocol.preset, overridden: protocol.overridden },
        images: 'eval.html links the images by paths relative to itself (images/<model>/<prompt index>-<seed>.png): keep it in its folder',
      });
      mkdirSync(out, { recursive: true });
      const json = join(out, 'eval.json');
      const page = join(out, 'eval.html');
      writeFileAtomic(json, JSON.stringify(report, null, 2) + '\n');
      writeFileAtomic(page, evalHtml(report));
      const summary = Object.fromEntries(Object.entries(report.results).map(([scorer, byModel]) => [scorer, Object.fromEntries(Object.entries(byModel).map(([label, r]) => [label, {
        mean: r.mean, median: r.median, ...(r.win_rate ? { win_rate: r.win_rate.rate, interval: [r.win_rate.low, r.win_rate.high] } : {}),
      }]))]));
      console.log(JSON.stringify({ output_dir: out, eval_json: json, page, models: names, images: { rendered, reused }, results: summary }, null, 2));
      return 0;
    },
  };
}

export const evalCommand = makeEvalCommand({ loadScorer });
