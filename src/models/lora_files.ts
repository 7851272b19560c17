// LoRA files: reading the layouts the field publishes, and writing the one diffusers reads.
//
// Read (each key names a component, a layer and a part):
//   diffusers 0.20      unet.<layer>.lora.{down,up}.weight; attention projections as processors,
//                       unet.<attn>.processor.{to_q,to_k,to_v,to_out}_lora.{down,up}.weight;
//                       text_encoder[_2].<layer>.lora_linear_layer.{down,up}.weight; keys without a
//                       component prefix are the UNet's (files of diffusers < 0.17)
//   peft / diffusers ≥ 0.24   <component>.<layer>.lora_A.weight (down) / lora_B.weight (up), α from
//                       "<layer>.alpha" keys or the file's lora_adapter_metadata, else α = rank
//   kohya (sd-scripts)  lora_unet_<layer with "_" for ".">.lora_down.weight / lora_up.weight / alpha,
//                       lora_te_ / lora_te1_ / lora_te2_ for the text encoders
// Layers are resolved against the loaded models, so a key naming no Linear or Conv2d of them, or a
// shape that does not fit, is an error naming the key. LoHa, LoKr, DoRA and LoCon's mid weights
// are refused by name.
//
// Written: diffusers 0.20's layout, which diffusers 0.20's load_lora_weights reads and later
// versions convert on load. 0.20 reads attention LoRA only as processors holding all four
// projections, and sets a processor on every attention layer of the UNet: the file therefore holds
// all four projections of every attention layer, with zero weights where no adapter was trained
// (they add nothing; the reader drops all-zero adapters). The α/rank scale is folded into the up
// weights (0.20's format has no α): the file computes exactly what the adapters computed.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../torch/index.js';
import { UserError } from '../util/errors.js';

const { Linear, Conv2d } = torch.nn;

export const LORA_WEIGHTS_NAME = 'pytorch_lora_weights.safetensors';

export type LoraComponent = 'unet' | 'text_encoder' | 'text_encoder_2';

/** The models a LoRA file may adapt (absent: the pipeline has no such component). */
export type LoraModels = Partial<Record<LoraComponent, torch.nn.Module | null>>;

export interface LoraLayerWeights {
  component: LoraComponent;
  /** The layer's dotted path in its component. */
  path: string;
  layer: torch.nn.AdaptableLayer;
  down: torch.Tensor;
  up: torch.Tensor;
  /** null: α = rank (scale 1). */
  alpha: number | null;
}

export interface LoraFile {
  file: string;
  format: 'diffusers' | 'peft' | 'kohya';
  layers: LoraLayerWeights[];
  metadata: Record<string, string>;
  /** Adapters whose weights are all zero (filler of diffusers' layout), dropped. */
  zeroLayers: number;
}

export class LoraFileError extends UserError {
  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'LoraFileError';
  }
}

/** A LoRA file, or a folder holding pytorch_lora_weights.safetensors (or .bin). */
export function loraFilePath(path: string): string {
  if (!existsSync(path)) throw new UserError(`${path}: no such LoRA file or folder`);
  if (!statSync(path).isDirectory()) return path;
  for (const name of [LORA_WEIGHTS_NAME, 'pytorch_lora_weights.bin']) if (existsSync(join(path, name))) return join(path, name);
  throw new UserError(`${path}: a folder without ${LORA_WEIGHTS_NAME}`);
}

function readTensors(file: string): { tensors: Map<string, torch.Tensor>; metadata: Record<string, string> } {
  if (file.endsWith('.safetensors')) {
    const f = torch.SafetensorsFile.open(file);
    try {
      return { tensors: new Map(f.keys().map((k) => [k, f.get(k)])), metadata: f.metadata };
    } finally {
      f.close();
    }
  }
  return { tensors: torch.loadTorchCheckpoint(file), metadata: {} };
}

type Part = 'down' | 'up' | 'alpha';

interface ParsedKey {
  component: LoraComponent;
  /** The layer's path, "." separated (kohya: "_" separated, resolved later). */
  layer: string;
  part: Part;
  kohya: boolean;
}

const UNSUPPORTED = [
  [/\.hada_|\.lokr_/, 'LoHa/LoKr (LyCORIS) weights'],
  [/dora_scale|lora_magnitude_vector/, 'DoRA magnitude vectors'],
  [/\.lora_mid\./, 'LoCon mid (Tucker) weights'],
  [/add_[kqv]_proj_lora|add_out_proj_lora/, 'added key/value attention processors'],
] as const;

const PROCESSOR_PROJECTIONS: Record<string, string> = { to_q: 'to_q', to_k: 'to_k', to_v: 'to_v', to_out: 'to_out.0' };
const TEXT_PROJECTIONS: Record<string, string> = { to_q: 'q_proj', to_k: 'k_proj', to_v: 'v_proj', to_out: 'out_proj' };

function parseKey(file: string, key: string): ParsedKey | null {
  for (const [re, what] of UNSUPPORTED) if (re.test(key)) throw new LoraFileError(file, `${key}: ${what} are not supported (plain LoRA only)`);
  const kohya = key.match(/^lora_(unet|te|te1|te2)_(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$/);
  if (kohya) {
    const component: LoraComponent = kohya[1] === 'unet' ? 'unet' : kohya[1] === 'te2' ? 'text_encoder_2' : 'text_encoder';
    const part: Part = kohya[3] === 'alpha' ? 'alpha' : kohya[3]!.startsWith('lora_down') ? 'down' : 'up';
    return { component, layer: kohya[2]!, part, kohya: true };
  }
  let rest = key.replace(/^base_model\.model\./, '');
  let component: LoraComponent = 'unet';
  for (const c of ['text_encoder_2', 'text_encoder', 'unet'] as const) {
    if (rest.startsWith(`${c}.`)) {
      component = c;
      rest = rest.slice(c.length + 1);
      break;
    }
  }
  rest = rest.replace(/^base_model\.model\./, '');
  if (rest.endsWith('.alpha')) return { component, layer: rest.slice(0, -'.alpha'.length), part: 'alpha', kohya: false };
  // old attention processors: <attn>.processor.to_q_lora.down.weight (UNet), <attn>.to_q_lora.down.weight (text encoders)
  const proc = rest.match(/^(.+?)(\.processor)?\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/);
  if (proc) {
    const proj = (component === 'unet' ? PROCESSOR_PROJECTIONS : TEXT_PROJECTIONS)[proc[3]!]!;
    return { component, layer: `${proc[1]}.${proj}`, part: proc[4] as Part, kohya: false };
  }
  const plain = rest.match(/^(.+)\.(?:lora|lora_linear_layer)\.(down|up)\.weight$/) ?? rest.match(/^(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$/);
  if (plain) {
    const part: Part = plain[2] === 'A' || plain[2] === 'down' ? 'down' : 'up';
    return { component, layer: plain[1]!, part, kohya: false };
  }
  return null;
}

/** α of a layer from peft's adapter metadata (lora_alpha, alpha_pattern), as diffusers ≥ 0.33 writes it. */
function metadataAlpha(metadata: Record<string, string>, component: LoraComponent, layer: string): number | null {
  const raw = metadata.lora_adapter_metadata;
  if (!raw) return null;
  let meta: Record<string, unknown>;
  try {
    meta = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    return null;
  }
  const config = (meta[component] ?? meta) as Record<string, unknown>;
  const pattern = (config.alpha_pattern ?? meta[`${component}.alpha_pattern`]) as Record<string, number> | undefined;
  if (pattern) for (const [p, a] of Object.entries(pattern)) if (torch.nn.matchesTarget(layer, p)) return a;
  const alpha = config.lora_alpha ?? meta[`${component}.lora_alpha`];
  return typeof alpha === 'number' ? alpha : null;
}

/** The Linear and Conv2d layers of a model by dotted path, and by path with "_" for "." (kohya's names). */
function layerIndex(model: torch.nn.Module): { dotted: Map<string, torch.nn.AdaptableLayer>; underscored: Map<string, string> } {
  const dotted = new Map<string, torch.nn.AdaptableLayer>();
  const underscored = new Map<string, string>();
  for (const [path, m] of model.namedModules()) {
    if (!(m instanceof Linear || m instanceof Conv2d)) continue;
    dotted.set(path, m);
    underscored.set(path.replaceAll('.', '_'), path);
  }
  return { dotted, underscored };
}

/**
 * Reads a LoRA file and resolves its layers in `models`. Every key must name a layer of a
 * component that is present, with shapes that fit it.
 */
export function readLoraFile(path: string, models: LoraModels): LoraFile {
  const file = loraFilePath(path);
  const { tensors, metadata } = readTensors(file);
  const groups = new Map<string, { component: LoraComponent; layer: string; kohya: boolean; down?: torch.Tensor; up?: torch.Tensor; alpha?: number }>();
  let format: LoraFile['format'] = 'diffusers';
  const unknown: string[] = [];
  for (const [key, t] of tensors) {
    const k = parseKey(file, key);
    if (!k) {
      unknown.push(key);
      continue;
    }
    if (k.kohya) format = 'kohya';
    else if (/\.lora_[AB]\b/.test(key)) format = 'peft';
    const id = `${k.component}:${k.layer}`;
    const g = groups.get(id) ?? { component: k.component, layer: k.layer, kohya: k.kohya };
    groups.set(id, g);
    if (k.part === 'alpha') g.alpha = t.item();
    else g[k.part] = t;
  }
  if (unknown.length) throw new LoraFileError(file, `not LoRA weights in a known layout: ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? `, ... (${unknown.length})` : ''}`);
  if (groups.size === 0) throw new LoraFileError(file, 'holds no LoRA weights');
  const indexes = new Map<LoraComponent, ReturnType<typeof layerIndex>>();
  const layers: LoraLayerWeights[] = [];
  let zeroLayers = 0;
  for (const g of groups.values()) {
    const where = `${g.component} layer ${g.layer}`;
    if (!g.down || !g.up) throw new LoraFileError(file, `${where}: ${g.down ? 'up' : 'down'} weight missing`);
    const model = models[g.component];
    if (!model) throw new LoraFileError(file, `adapts the ${g.component}, which ${g.component in models ? 'this pipeline has not' : 'is not loaded here'}`);
    let index = indexes.get(g.component);
    if (!index) indexes.set(g.component, (index = layerIndex(model)));
    const path = g.kohya ? index.underscored.get(g.layer) : g.layer;
    const layer = path ? index.dotted.get(path) : undefined;
    if (!path || !layer) {
      const hint = g.kohya && /input_blocks|output_blocks|middle_block/.test(g.layer) ? ' (kohya files with original-SD block names, as sd-scripts writes for SDXL, are not supported)' : '';
      throw new LoraFileError(file, `${where}: no Linear or Conv2d layer of that name${hint}`);
    }
    const rank = g.down.shape[0]!;
    const [out, inn] = layer.weight.shape as [number, number];
    const expectDown = layer instanceof Linear ? [rank, inn] : [rank, inn, ...layer.weight.shape.slice(2)];
    const expectUp = layer instanceof Linear ? [out, rank] : [out, rank, 1, 1];
    if (g.down.shape.join() !== expectDown.join() || g.up.shape.join() !== expectUp.join()) {
      throw new LoraFileError(file, `${where}: down [${g.down.shape.join(', ')}] / up [${g.up.shape.join(', ')}] do not fit a layer of weight [${layer.weight.shape.join(', ')}]`);
    }
    const zero = torch.tidy(() => g.down!.abs().max().item() === 0 && g.up!.abs().max().item() === 0);
    if (zero) {
      zeroLayers++;
      g.down.dispose();
      g.up.dispose();
      continue;
    }
    const alpha = g.alpha ?? metadataAlpha(metadata, g.component, path);
    layers.push({ component: g.component, path, layer, down: g.down, up: g.up, alpha });
  }
  return { file, format, layers, metadata, zeroLayers };
}

export function disposeLoraFile(f: LoraFile): void {
  for (const l of f.layers) {
    l.down.dispose();
    l.up.dispose();
  }
}

/** One adapter set per component, holding a file's weights (α from the file; no dropout unless asked). */
export function attachLora(f: LoraFile, o: { dtype?: torch.DType; device?: torch.Device; dropout?: number } = {}): Map<LoraComponent, torch.nn.LoraAdapters> {
  const sets = new Map<LoraComponent, torch.nn.LoraAdapters>();
  for (const l of f.layers) {
    let set = sets.get(l.component);
    if (!set) sets.set(l.component, (set = new torch.nn.LoraAdapters()));
    const rank = l.down.shape[0]!;
    const adapter = set.add(l.path, l.layer, { rank, alpha: l.alpha ?? rank, dropout: o.dropout ?? 0 }, { dtype: o.dtype ?? 'float32', device: o.device ?? l.layer.weight.device });
    torch.noGrad(() => {
      adapter.down.weight.copy_(l.down);
      adapter.up.weight.copy_(l.up);
    });
  }
  return sets;
}

/** Folds a file's adapters into the models' weights, times `scale` (diffusers' lora_scale / fuse_lora). */
export function mergeLora(f: LoraFile, scale = 1): void {
  for (const set of attachLora(f).values()) set.mergeAndRemove(scale);
}

/**
 * The UNet adapters as diffusers 0.20 lays them out (see the head of this file): every attention
 * layer's four projections as a processor at one rank (zero where untrained, zero-padded where a
 * projection's rank is smaller), the other layers as `<layer>.lora.{down,up}.weight`, the α/rank
 * scale folded into up, float32.
 */
export function diffusersLoraStateDict(unet: torch.nn.Module, adapters: torch.nn.LoraAdapters): Map<string, torch.Tensor> {
  const out = new Map<string, torch.Tensor>();
  const trained = new Map(adapters.entries());
  const defaultRank = trained.values().next().value?.settings.rank ?? 4;
  const emit = (prefix: string, down: torch.Tensor, up: torch.Tensor) => {
    out.set(`${prefix}.down.weight`, down);
    out.set(`${prefix}.up.weight`, up);
  };
  /**
   * An adapter's weights at `rank` (α/r folded into up): a smaller one is zero-padded (extra rows of
   * down, columns of up: the same function), an absent one is all zeros (filler).
   */
  const weights = (layer: torch.nn.AdaptableLayer, path: string, rank: number): [torch.Tensor, torch.Tensor] => {
    const a = trained.get(path);
    trained.delete(path);
    if (!a) {
      const [o, i] = layer.weight.shape as [number, number];
      return [torch.zeros([rank, i], { device: 'cpu' }), torch.zeros([o, rank], { device: 'cpu' })];
    }
    let down = a.down.weight.detach().to({ dtype: 'float32', device: 'cpu', copy: true });
    let up = a.up.weight.detach().to({ dtype: 'float32', device: 'cpu' }).mul(a.scale);
    const r = a.settings.rank;
    if (r < rank) {
      down = torch.cat([down, torch.zeros([rank - r, ...down.shape.slice(1)], { device: 'cpu' })], 0);
      up = torch.cat([up, torch.zeros([up.shape[0]!, rank - r, ...up.shape.slice(2)], { device: 'cpu' })], 1);
    }
    return [down, up];
  };
  for (const [path, m] of unet.namedModules()) {
    // an attention layer: the module holding to_q, to_k, to_v and to_out.0
    const children = new Map(m.namedChildren());
    if (!path || !['to_q', 'to_k', 'to_v', 'to_out'].every((c) => children.has(c))) continue;
    // diffusers 0.20 builds one processor per layer at to_k's rank and loads all four into it:
    // the layer's projections are written at its largest trained rank
    const ranks = Object.values(PROCESSOR_PROJECTIONS).map((n) => trained.get(`${path}.${n}`)?.settings.rank).filter((r): r is number => r !== undefined);
    const rank = ranks.length ? Math.max(...ranks) : defaultRank;
    for (const [proj, layerName] of Object.entries(PROCESSOR_PROJECTIONS)) {
      const layer = [...m.namedModules()].find(([p]) => p === layerName)?.[1];
      if (!(layer instanceof Linear)) throw new Error(`${path}.${layerName} is not a Linear layer`);
      emit(`unet.${path}.processor.${proj}_lora`, ...weights(layer, `${path}.${layerName}`, rank));
    }
  }
  for (const [path, a] of [...trained]) emit(`unet.${path}.lora`, ...weights(a.layer, path, a.settings.rank));
  return out;
}
