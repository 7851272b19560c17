// What `diffusion-dpo eval` measured, as one plain object: written as eval.json and rendered as
// eval.html. Built from the scores alone (no models, no files read), so every number can be
// checked from a table of scores. Summary numbers sit in nested objects (results.<scorer>.<model>)
// and per-prompt rows in arrays: `upload`'s model card lists eval.json's numeric leaves outside
// arrays, so a card shows the summary, not thousands of per-image scores.
import type { ResolvedProtocol } from './protocol.js';
import { bootstrapMeanOverGroups, mean, median, outcome, winRate, type BootstrapOptions } from './stats.js';

export interface EvalModel {
  /** unique; the base pipeline is 'base' */
  label: string;
  kind: 'base' | 'unet' | 'lora';
  /** what was given: the pipeline, the --unet or the --lora */
  source: string;
  /** its images' folder, relative to the output folder */
  folder: string;
}

export interface ScorerInfo {
  name: string;
  description: string;
}

export interface EvalInput {
  created: string;
  command: string[];
  prompts: readonly string[];
  /** the seeds every prompt was rendered with */
  seeds: readonly number[];
  /** models[0] is the base */
  models: readonly EvalModel[];
  /** files[model][prompt][seed]: relative to the output folder */
  files: readonly (readonly (readonly string[])[])[];
  scorers: readonly ScorerInfo[];
  /** scores[scorer name][model][prompt][seed] */
  scores: Readonly<Record<string, readonly (readonly (readonly number[])[])[]>>;
  bootstrap: BootstrapOptions;
  /** the sampling settings actually used */
  settings: Record<string, string | number | null>;
  protocol: Pick<ResolvedProtocol, 'name' | 'description' | 'preset' | 'overridden'>;
  /** how eval.html shows the images */
  images: string;
}

export interface WinResult {
  vs: string;
  rate: number;
  /** the bootstrap interval (see statistics) */
  low: number;
  high: number;
  wins: number;
  ties: number;
  losses: number;
  pairs: number;
}

export interface ModelResult {
  mean: number;
  median: number;
  images: number;
  /** trained models only */
  win_rate?: WinResult;
}

export interface PromptImage {
  seed: number;
  files: Record<string, string>;
  /** scores[scorer][model] */
  scores: Record<string, Record<string, number>>;
}

export interface PromptRow {
  index: number;
  prompt: string;
  images: PromptImage[];
  /** mean over the prompt's seeds: mean[scorer][model] */
  mean: Record<string, Record<string, number>>;
  /** over the prompt's seeds: win_rate[scorer][trained model] */
  win_rate: Record<string, Record<string, number>>;
}

export interface EvalReport {
  format: 'diffusion-dpo-eval';
  version: 1;
  created: string;
  command: string[];
  protocol: EvalInput['protocol'];
  settings: EvalInput['settings'];
  scorers: ScorerInfo[];
  statistics: { win_rate: string; interval: string; resamples: number; seed: number; level: number; generator: string };
  models: EvalModel[];
  images: string;
  /** results[scorer][model] */
  results: Record<string, Record<string, ModelResult>>;
  /** The headline: win_rates[scorer][trained model], each trained model's win rate and interval. */
  win_rates: Record<string, Record<string, { win_rate: number; ci_low: number; ci_high: number }>>;
  prompts: PromptRow[];
}

export const BASE_LABEL = 'base';

function checkShape(input: EvalInput): void {
  const { prompts, seeds, models } = input;
  const check = (what: string, grid: readonly (readonly (readonly unknown[])[])[]) => {
    if (grid.length !== models.length || grid.some((m) => m.length !== prompts.length || m.some((p) => p.length !== seeds.length))) {
      throw new RangeError(`${what}: expected ${models.length} models x ${prompts.length} prompts x ${seeds.length} seeds`);
    }
  };
  if (models[0]?.kind !== 'base') throw new RangeError('the first model must be the base');
  if (new Set(models.map((m) => m.label)).size !== models.length) throw new RangeError('model labels must be unique');
  check('files', input.files);
  for (const s of input.scorers) {
    const grid = input.scores[s.name];
    if (!grid) throw new RangeError(`no scores for ${s.name}`);
    check(`scores of ${s.name}`, grid);
  }
}

export function buildEvalReport(input: EvalInput): EvalReport {
  checkShape(input);
  const { prompts, seeds, models, bootstrap } = input;
  const base = models[0]!;
  const results: EvalReport['results'] = {};
  for (const s of input.scorers) {
    const grid = input.scores[s.name]!;
    const byModel: Record<string, ModelResult> = {};
    models.forEach((m, mi) => {
      const all = grid[mi]!.flat();
      const r: ModelResult = { mean: mean(all), median: median(all), images: all.length };
      if (mi > 0) {
        const w = winRate(all, grid[0]!.flat());
        // one group per prompt: its seeds' outcomes travel together in a resample
        const groups = grid[mi]!.map((row, pi) => row.map((x, k) => outcome(x, grid[0]![pi]![k]!)));
        const ci = bootstrapMeanOverGroups(groups, bootstrap);
        r.win_rate = { vs: base.label, rate: w.rate, low: ci.low, high: ci.high, wins: w.wins, ties: w.ties, losses: w.losses, pairs: all.length };
      }
      byModel[m.label] = r;
    });
    results[s.name] = byModel;
  }
  const rows: PromptRow[] = prompts.map((prompt, pi) => {
    const images: PromptImage[] = seeds.map((seed, k) => ({
      seed,
      files: Object.fromEntries(models.map((m, mi) => [m.label, input.files[mi]![pi]![k]!])),
      scores: Object.fromEntries(input.scorers.map((s) => [s.name, Object.fromEntries(models.map((m, mi) => [m.label, input.scores[s.name]![mi]![pi]![k]!]))])),
    }));
    const meanOf: PromptRow['mean'] = {};
    const winOf: PromptRow['win_rate'] = {};
    for (const s of input.scorers) {
      const grid = input.scores[s.name]!;
      meanOf[s.name] = Object.fromEntries(models.map((m, mi) => [m.label, mean(grid[mi]![pi]!)]));
      winOf[s.name] = Object.fromEntries(models.slice(1).map((m, i) => [m.label, winRate(grid[i + 1]![pi]!, grid[0]![pi]!).rate]));
    }
    return { index: pi, prompt, images, mean: meanOf, win_rate: winOf };
  });
  const pct = Math.round(bootstrap.level * 1000) / 10;
  return {
    format: 'diffusion-dpo-eval',
    version: 1,
    created: input.created,
    command: input.command,
    protocol: input.protocol,
    settings: input.settings,
    scorers: input.scorers.map((s) => ({ ...s })),
    statistics: {
      win_rate: `per prompt x seed pair, a trained model's image against the ${base.label} image: 1 when it scores higher, 0.5 on an exact tie, 0 when lower; averaged over all pairs`,
      interval: `${pct}% percentile bootstrap over prompts (prompts drawn with replacement, a prompt's seeds kept together; ${bootstrap.resamples} resamples, seed ${bootstrap.seed}; quantiles by linear interpolation)`,
      resamples: bootstrap.resamples,
      seed: bootstrap.seed,
      level: bootstrap.level,
      generator: 'mulberry32 (src/data/rng.ts)',
    },
    models: models.map((m) => ({ ...m })),
    images: input.images,
    results,
    win_rates: Object.fromEntries(Object.entries(results).map(([scorer, byModel]) => [scorer, Object.fromEntries(Object.entries(byModel)
      .filter(([, r]) => r.win_rate).map(([label, r]) => [label, { win_rate: r.win_rate!.rate, ci_low: r.win_rate!.low, ci_high: r.win_rate!.high }]))])),
    prompts: rows,
  };
}
