// The README.md model card `upload` generates: a pure function of a typed description (what was
// trained, from what, how, and what eval.json measured), so that every line can be tested without
// a folder or a server. Facts the training output does not record are null here and "unknown" in
// the card: a card that guesses would be read as the truth by whoever finds the model.
// Front matter: the Hub validates base_model and datasets as repo ids, so local paths never go
// there; the body names a local model or dataset by its last path component only (a public card
// should not publish the trainer's file system).

export type UploadKind = 'pipeline' | 'unet' | 'lora';

/** sd1: SD 1.x; sd2: SD 2.x; sd: SD 1.x or 2.x, version unknown; sdxl: SDXL. */
export type ModelFamily = 'sd1' | 'sd2' | 'sd' | 'sdxl';

export interface LoraFacts {
  rank: number | null;
  alpha: number | null;
  targets: string[];
  init: string | null;
}

/** What the training output says of the run; null: not recorded. */
export interface TrainingFacts {
  /** The base model as given to train (Hub id, cache path or local path). */
  baseModel: string | null;
  /** train --unet_init (LoRA runs record it). */
  unetInit: string | null;
  dataset: string | null;
  /** sigmoid (Diffusion-DPO), hinge, ipo, mapo, kto or sft. */
  objective: string | null;
  betaDpo: number | null;
  steps: number | null;
  effectiveBatch: number | null;
  learningRate: number | null;
  resolution: number | null;
  lora: LoraFacts | null;
}

export interface ModelCardDescription {
  repoId: string;
  /** The branch the upload goes to (the usage snippet names it when it is not main). */
  revision: string;
  kind: UploadKind;
  family: ModelFamily | null;
  /** --license; null: the family's default (none known: left out). */
  license: string | null;
  facts: TrainingFacts;
  /** eval.json as parsed (a JSON object), or null when there is none. */
  evalJson: Record<string, unknown> | null;
  /** Where the uploaded weights sit in the repo. */
  layout: {
    /** A UNet upload: its files are under unet/ (else at the root). */
    unetSubfolder: boolean;
    /** A LoRA upload: the weights file's name. */
    loraWeightName: string;
    /** report.html (the training curves) is uploaded beside the weights. */
    report: boolean;
  };
}

export const DEFAULT_LORA_WEIGHT_NAME = 'pytorch_lora_weights.safetensors';

/** The license of the base model's family: SDXL and SD 2.x are CreativeML Open RAIL++-M, SD 1.x CreativeML Open RAIL-M. */
export function defaultLicense(family: ModelFamily | null): string | null {
  switch (family) {
    case 'sd1':
      return 'creativeml-openrail-m';
    case 'sd2':
    case 'sdxl':
      return 'openrail++';
    default:
      return null;
  }
}

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;
const CACHE_PATH = /(?:^|[/\\])(?:models|datasets)--([\w.-]+?)--([\w.-]+)[/\\]snapshots[/\\]/;

/**
 * The Hub id a recorded source stands for: an id as typed (org/name), or the id of a Hugging Face
 * cache snapshot path (train records the resolved dataset path); null for a local path.
 */
export function hubIdOf(source: string): string | null {
  const cached = source.match(CACHE_PATH);
  if (cached) return `${cached[1]}/${cached[2]}`;
  if (HUB_ID.test(source) && !source.includes('..') && !source.includes('--')) return source;
  return null;
}

/** Numeric leaves of a JSON object, nested keys joined with '.'; strings, booleans, arrays and nulls are left out. */
export function flattenNumbers(o: Record<string, unknown>, prefix = ''): [string, number][] {
  const out: [string, number][] = [];
  for (const [k, v] of Object.entries(o)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (typeof v === 'number' && Number.isFinite(v)) out.push([key, v]);
    else if (typeof v === 'object' && v !== null && !Array.isArray(v)) out.push(...flattenNumbers(v as Record<string, unknown>, key));
  }
  return out;
}

function lastComponent(path: string): string {
  return path.replace(/[/\\]+$/, '').split(/[/\\]/).pop() || path;
}

/** A YAML scalar: plain when it cannot be misread, else double-quoted (a JSON string is valid YAML). */
function yamlScalar(s: string): string {
  return /^[A-Za-z0-9][\w./+-]*$/.test(s) && !/^(true|false|yes|no|on|off|null|~)$/i.test(s) ? s : JSON.stringify(s);
}

/** Markdown table cell text: pipes and newlines would break the row. */
function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

function num(n: number): string {
  if (Number.isInteger(n)) return String(n);
  const abs = Math.abs(n);
  return abs !== 0 && (abs < 1e-3 || abs >= 1e6) ? n.toExponential() : String(Number(n.toPrecision(6)));
}

function modelRef(source: string | null, kind: 'model' | 'dataset'): string {
  if (source === null) return 'unknown';
  const id = hubIdOf(source);
  if (id) return `[${id}](https://huggingface.co/${kind === 'dataset' ? 'datasets/' : ''}${id})`;
  return `a local ${kind === 'dataset' ? 'dataset' : 'model'} (\`${cell(lastComponent(source))}\`)`;
}

const OBJECTIVES: Record<string, string> = {
  sigmoid: 'Diffusion-DPO (sigmoid loss, as in the paper)',
  hinge: 'Diffusion-DPO with a hinge loss',
  ipo: 'Diffusion-DPO with the IPO loss',
  mapo: 'MaPO (reference-free)',
  kto: 'Diffusion-KTO (per-image like/dislike)',
  sft: 'supervised fine-tuning on the preferred images (SFT)',
};

const FAMILY_NAMES: Record<ModelFamily, string> = {
  sd1: 'Stable Diffusion 1.x',
  sd2: 'Stable Diffusion 2.x',
  sd: 'Stable Diffusion',
  sdxl: 'Stable Diffusion XL',
};

function frontMatter(d: ModelCardDescription): string {
  const license = d.license ?? defaultLicense(d.family);
  const base = d.facts.baseModel === null ? null : hubIdOf(d.facts.baseModel);
  const dataset = d.facts.dataset === null ? null : hubIdOf(d.facts.dataset);
  const tags = ['diffusion-dpo', 'text-to-image'];
  if (d.family === 'sdxl') tags.push('stable-diffusion-xl');
  else if (d.family) tags.push('stable-diffusion');
  if (d.kind === 'lora') tags.push('lora');
  const lines = ['---'];
  if (license) lines.push(`license: ${yamlScalar(license)}`);
  if (base) lines.push(`base_model: ${yamlScalar(base)}`);
  if (dataset) lines.push('datasets:', `  - ${yamlScalar(dataset)}`);
  lines.push('tags:', ...tags.map((t) => `  - ${t}`), 'library_name: diffusers', '---');
  return lines.join('\n');
}

function trainingTable(d: ModelCardDescription): string {
  const f = d.facts;
  const unknown = (v: number | null) => (v === null ? 'unknown' : num(v));
  const objective = f.objective === null ? 'unknown' : OBJECTIVES[f.objective] ?? cell(f.objective);
  // β is the temperature of sigmoid, hinge, ipo and kto; mapo has its own weight and SFT none
  const beta = f.objective === 'mapo' || f.objective === 'sft' ? `not used by ${f.objective}` : unknown(f.betaDpo);
  const rows: [string, string][] = [
    ['base model', modelRef(f.baseModel, 'model')],
    ...(f.unetInit ? [['UNet initialised from', modelRef(f.unetInit, 'model')] as [string, string]] : []),
    ['dataset', modelRef(f.dataset, 'dataset')],
    ['objective', objective],
    ['β (beta_dpo)', beta],
    ['steps (optimizer updates)', unknown(f.steps)],
    ['effective batch (per device × accumulation × processes)', unknown(f.effectiveBatch)],
    ['learning rate', unknown(f.learningRate)],
    ['resolution', f.resolution === null ? 'unknown' : `${f.resolution} px`],
  ];
  if (d.kind === 'lora') {
    const l = f.lora;
    rows.push(
      ['LoRA rank', l ? unknown(l.rank) : 'unknown'],
      ['LoRA alpha', l ? unknown(l.alpha) : 'unknown'],
      ['LoRA targets', l && l.targets.length ? cell(l.targets.join(', ')) : 'unknown'],
      ['LoRA init', l?.init ? cell(l.init) : 'unknown'],
    );
  }
  return ['| setting | value |', '| --- | --- |', ...rows.map(([k, v]) => `| ${k} | ${v} |`)].join('\n');
}

function evalSection(d: ModelCardDescription): string {
  if (!d.evalJson) return '';
  // win_rates restates results.<scorer>.<model>.win_rate under the names a reader looks for: listed once
  const rows = flattenNumbers(d.evalJson).filter(([k]) => !k.startsWith('win_rates.'));
  const body = rows.length === 0
    ? 'eval.json holds no numeric entries.'
    : ['| metric | value |', '| --- | --- |', ...rows.map(([k, v]) => `| ${cell(k)} | ${num(v)} |`)].join('\n');
  return `\n## Evaluation\n\nFrom \`eval.json\` (uploaded with the model):\n\n${body}\n`;
}

function usage(d: ModelCardDescription): string {
  const rev = d.revision === 'main' ? '' : `, revision=${JSON.stringify(d.revision)}`;
  const repo = JSON.stringify(d.repoId);
  const baseId = d.facts.baseModel === null ? null : hubIdOf(d.facts.baseModel);
  const base = baseId ? JSON.stringify(baseId) : '"BASE_MODEL"';
  const baseNote = baseId ? '' : '  # the base model this was trained from (not recorded)';
  const head = ['```python', 'import torch', d.kind === 'unet' ? 'from diffusers import DiffusionPipeline, UNet2DConditionModel' : 'from diffusers import DiffusionPipeline', ''];
  let load: string[];
  if (d.kind === 'pipeline') {
    load = [`pipe = DiffusionPipeline.from_pretrained(${repo}, torch_dtype=torch.float16${rev}).to("cuda")`];
  } else if (d.kind === 'unet') {
    const sub = d.layout.unetSubfolder ? ', subfolder="unet"' : '';
    load = [
      `unet = UNet2DConditionModel.from_pretrained(${repo}${sub}, torch_dtype=torch.float16${rev})`,
      `pipe = DiffusionPipeline.from_pretrained(${base}, unet=unet, torch_dtype=torch.float16).to("cuda")${baseNote}`,
    ];
  } else {
    const weight = d.layout.loraWeightName === DEFAULT_LORA_WEIGHT_NAME ? '' : `, weight_name=${JSON.stringify(d.layout.loraWeightName)}`;
    load = [
      `pipe = DiffusionPipeline.from_pretrained(${base}, torch_dtype=torch.float16).to("cuda")${baseNote}`,
      `pipe.load_lora_weights(${repo}${weight}${rev})`,
    ];
  }
  return [...head, ...load, 'image = pipe("a photo of a cat sitting on a windowsill").images[0]', 'image.save("cat.png")', '```'].join('\n');
}

function what(d: ModelCardDescription): string {
  const family = d.family ? FAMILY_NAMES[d.family] : 'Stable Diffusion (version unknown)';
  switch (d.kind) {
    case 'pipeline':
      return `A ${family} pipeline (diffusers layout) whose UNet was fine-tuned`;
    case 'unet':
      return `A ${family} UNet fine-tuned`;
    case 'lora':
      return `A LoRA for ${family}'s UNet, trained`;
  }
}

/** How it was trained, by objective (unknown: the tool's namesake). */
function how(objective: string | null): string {
  if (objective === 'sft') return 'by supervised fine-tuning on the preferred images of human preference pairs';
  if (objective === 'mapo') return 'on human preference pairs with MaPO (Hong et al. 2024), a reference-free preference objective';
  return 'on human preference pairs with [Diffusion-DPO](https://arxiv.org/abs/2311.12908) (Wallace et al.)';
}

/** The README.md of an upload. */
export function renderModelCard(d: ModelCardDescription): string {
  const license = d.license ?? defaultLicense(d.family);
  return `${frontMatter(d)}

# ${d.repoId}

${what(d)} ${how(d.facts.objective)}, using \`diffusion-dpo\`.

## Training

${trainingTable(d)}
${d.layout.report ? '\nThe training curves (loss, implicit accuracy, learning rate) are in [report.html](report.html).\n' : ''}${evalSection(d)}
## Usage

${usage(d)}

## License

${license ? `\`${license}\`${d.license ? '' : `, the license of ${d.family ? FAMILY_NAMES[d.family] : 'the base model'}`}.` : 'unknown: the base model\'s license applies.'}
`;
}
