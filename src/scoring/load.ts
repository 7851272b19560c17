// Loading a scorer: its model from a local folder or file, or from the Hub (the cache first, only
// the files it needs downloaded), with the defaults the reference uses:
//   pickscore   yuvalkirstain/PickScore_v1, processor laion/CLIP-ViT-H-14-laion2B-s32B-b79K
//   hpsv2       xswu/HPSv2 HPS_v2_compressed.pt (open_clip ViT-H-14), tokenizer from the laion repo
//   hpsv2.1     xswu/HPSv2 HPS_v2.1_compressed.pt
//   clip        laion/CLIP-ViT-H-14-laion2B-s32B-b79K (open_clip_config.json + its open_clip weights),
//               or a local transformers CLIPModel folder (the demo's tiny CLIP is one)
//   aesthetics  openai/clip-vit-large-patch14, and the LAION head that ships in assets/aesthetics
//   demo_oracle the demo's preference rule on pixels (demo_oracle.ts): no model
// The tokenizer and the image-processor config are read from the model's folder when they are
// there, else from `processor`.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { resolveRepoFiles } from '../hub/index.js';
import { loadCLIPModel, loadOpenClipModel } from '../models/index.js';
import { CLIPTokenizer } from '../tokenizers/clip.js';
import { UserError } from '../util/errors.js';
import { AestheticsHead, bundledAestheticsHead } from './aesthetics_head.js';
import { DemoOracleScorer } from './demo_oracle.js';
import { clipImageProcessorConfig, openClipPreprocess } from './preprocess.js';
import { AestheticsScorer, OpenClipScorer, PickScoreScorer } from './scorers.js';
import type { Scorer, ScorerName, ScorerOptions } from './types.js';

const LAION_H14 = 'laion/CLIP-ViT-H-14-laion2B-s32B-b79K';

/** open_clip's ViT-H-14 model config (open_clip/model_configs/ViT-H-14.json). */
const VIT_H_14 = {
  embed_dim: 1024,
  vision_cfg: { image_size: 224, layers: 32, width: 1280, head_width: 80, patch_size: 14 },
  text_cfg: { context_length: 77, vocab_size: 49408, width: 1024, heads: 16, layers: 24 },
};

const DEFAULT_MODELS: Record<Exclude<ScorerName, 'demo_oracle'>, string> = {
  pickscore: 'yuvalkirstain/PickScore_v1', hpsv2: 'xswu/HPSv2', 'hpsv2.1': 'xswu/HPSv2', clip: LAION_H14, aesthetics: 'openai/clip-vit-large-patch14',
};
const HPS_FILES: Partial<Record<ScorerName, string>> = { hpsv2: 'HPS_v2_compressed.pt', 'hpsv2.1': 'HPS_v2.1_compressed.pt' };

const TOKENIZER_FILES = /^(vocab\.json|merges\.txt|tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json)$/;
const hasTokenizer = (d: string) => existsSync(join(d, 'tokenizer.json')) || (existsSync(join(d, 'vocab.json')) && existsSync(join(d, 'merges.txt')));
const hasProcessor = (d: string) => existsSync(join(d, 'preprocessor_config.json'));
const isDir = (p: string) => existsSync(p) && statSync(p).isDirectory();
const hasOpenClipWeights = (d: string) => existsSync(join(d, 'open_clip_pytorch_model.bin')) || existsSync(join(d, 'open_clip_model.safetensors'));


/** The folder of the processor files (tokenizer, preprocessor_config.json): the model's, else `processor`, else the default repo. */
async function processorFolder(modelFolder: string | null, o: ScorerOptions, fallback: string, need: (d: string) => boolean): Promise<string> {
  if (modelFolder && need(modelFolder)) return modelFolder;
  const source = o.processor ?? fallback;
  const folder = await resolveRepoFiles(source, (files) => files.filter((f) => TOKENIZER_FILES.test(f) || f === 'preprocessor_config.json'), need, { cacheDir: o.cacheDir });
  if (!need(folder)) throw new UserError(`${source}: no tokenizer (vocab.json + merges.txt, or tokenizer.json)${need === hasTokenizer ? '' : ' or preprocessor_config.json'} here`);
  return folder;
}

function description(name: ScorerName, model: string, processor: string | null): string {
  return `${name}: ${model}${processor && processor !== model ? ` (processor ${processor})` : ''}`;
}

export async function loadScorer(name: ScorerName, o: ScorerOptions = {}): Promise<Scorer> {
  if (name === 'demo_oracle') {
    if (o.model || o.processor) throw new UserError('the demo_oracle scorer is a rule on pixels: it takes no model or processor');
    return new DemoOracleScorer();
  }
  const device = o.device ?? 'cpu';
  const batchSize = o.batchSize ?? 16;
  const source = o.model ?? DEFAULT_MODELS[name];
  const weights = /\.(safetensors|bin)$/;

  // clip from a transformers CLIPModel folder (config.json and no open_clip weights: the laion repos
  // hold both, and stay open_clip), as torchmetrics' CLIPScore loads one
  const transformersClip = name === 'clip' && isDir(source) && existsSync(join(source, 'config.json')) && !hasOpenClipWeights(source);
  if (transformersClip && !o.processor) {
    // its own vocabulary and image size: another model's processor files would be silently wrong
    const missing = [hasTokenizer(source) ? '' : 'a tokenizer (vocab.json + merges.txt, or tokenizer.json)', hasProcessor(source) ? '' : 'preprocessor_config.json'].filter(Boolean);
    if (missing.length) throw new UserError(`${source}: a transformers CLIPModel folder for the clip scorer needs ${missing.join(' and ')} beside config.json (or name them with a processor folder)`);
  }
  if (name === 'pickscore' || name === 'aesthetics' || transformersClip) {
    const folder = await resolveRepoFiles(source, (files) => files.filter((f) => f === 'config.json' || TOKENIZER_FILES.test(f) || f === 'preprocessor_config.json' || /^(model|pytorch_model)(\.safetensors|\.bin)(\.index\.json)?$/.test(f) || /^model-\d+-of-\d+\.safetensors$/.test(f)),
      (d) => existsSync(join(d, 'config.json')), { cacheDir: o.cacheDir });
    if (!isDir(folder)) throw new UserError(`--model ${source}: a ${name} model is a transformers CLIPModel folder (config.json and its weights)`);
    const model = loadCLIPModel(folder, { device });
    const pre = await processorFolder(folder, o, name === 'aesthetics' ? DEFAULT_MODELS.aesthetics : LAION_H14, hasProcessor);
    const preprocess = clipImageProcessorConfig(JSON.parse(readFileSync(join(pre, 'preprocessor_config.json'), 'utf8')) as Record<string, unknown>);
    const common = { name, device, batchSize, preprocess };
    if (name === 'aesthetics') {
      if (model.config.projectionDim !== 768) throw new UserError(`--model ${source}: the aesthetics head reads 768-wide image embeddings (CLIP ViT-L/14); this model's are ${model.config.projectionDim}`);
      return new AestheticsScorer({ ...common, description: description(name, source, pre === folder ? null : pre) + `; head ${basename(bundledAestheticsHead())}` }, model, AestheticsHead.load(undefined, { device }));
    }
    const tok = await processorFolder(folder, o, LAION_H14, hasTokenizer);
    return new PickScoreScorer({ ...common, description: description(name, source, tok === folder ? null : tok) + (transformersClip ? ' (transformers CLIPModel; cosine)' : '') },
      model, CLIPTokenizer.fromFolder(tok), { scaled: !transformersClip });
  }

  // open_clip models: a checkpoint file, or a folder holding one (and maybe open_clip_config.json)
  const hpsFile = HPS_FILES[name];
  const wantedFile = (f: string) => (hpsFile ? f === hpsFile : f === 'open_clip_config.json' || /^open_clip_(pytorch_model\.bin|model\.safetensors)$/.test(f));
  const located = existsSync(source) && !isDir(source) ? source : await resolveRepoFiles(source, (files) => files.filter(wantedFile),
    (d) => (hpsFile ? existsSync(join(d, hpsFile)) : hasOpenClipWeights(d)), { cacheDir: o.cacheDir });
  let file = located;
  let config: Record<string, unknown> = VIT_H_14;
  if (isDir(located)) {
    const candidates = [hpsFile, 'open_clip_model.safetensors', 'open_clip_pytorch_model.bin'].filter((f): f is string => !!f).map((f) => join(located, f));
    const found = candidates.find((f) => existsSync(f));
    if (!found) throw new UserError(`${source}: no ${hpsFile ?? 'open_clip_model.safetensors or open_clip_pytorch_model.bin'} here`);
    file = found;
    const cfg = join(located, 'open_clip_config.json');
    if (existsSync(cfg)) config = (JSON.parse(readFileSync(cfg, 'utf8')) as { model_cfg?: Record<string, unknown> }).model_cfg ?? config;
  } else {
    if (!weights.test(file) && !file.endsWith('.pt')) throw new UserError(`--model ${source}: expected an open_clip checkpoint (.pt, .bin or .safetensors) or a folder with one`);
    // a checkpoint file of another architecture than ViT-H-14 says so in an open_clip_config.json beside it
    const cfg = join(dirname(file), 'open_clip_config.json');
    if (existsSync(cfg)) config = (JSON.parse(readFileSync(cfg, 'utf8')) as { model_cfg?: Record<string, unknown> }).model_cfg ?? config;
  }
  const model = loadOpenClipModel(file, config, { device });
  const tok = await processorFolder(isDir(located) ? located : null, o, LAION_H14, hasTokenizer);
  // open_clip's tokenizer pads with 0 whatever the processor's pad token
  const tokenizer = CLIPTokenizer.fromFolder(tok);
  const preprocess = openClipPreprocess(model.config.vision.imageSize);
  return new OpenClipScorer({ name, device, batchSize, preprocess, description: description(name, source, tok) }, model, tokenizer);
}

/** Frees a scorer list (commands load several). */
export function disposeScorers(scorers: Scorer[]): void {
  for (const s of scorers) s.dispose();
}

export type { Scorer, ScorerName, ScorerOptions } from './types.js';
export { SCORER_NAMES, checkScorerName } from './types.js';
