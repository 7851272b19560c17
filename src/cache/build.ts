// Builds a latent cache: every kept row's images through the VAE encoder (both views when flips
// are cached) and its caption(s) through the text encoder(s), once, in the weight dtype a run will
// use. Rows are read and transformed ahead (data workers, sharp's threads) while the current chunk
// is encoded; each shard is written atomically and then recorded in the manifest, so a killed
// build resumes at the first missing shard and writes the same bytes it would have written.
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../torch/index.js';
import type { PreferenceDataset } from '../data/dataset.js';
import { ImageDecodeError } from '../data/decode.js';
import type { BadRow, PairRow } from '../data/record.js';
import { TransformPool } from '../data/transform_pool.js';
import {
  encodeSdxlPrompt, loadCLIPTextModel, loadCLIPTextModelWithProjection, loadVAE,
  type AutoencoderKL, type CLIPTextModel, type CLIPTextModelWithProjection,
} from '../models/index.js';
import { CLIPTokenizer } from '../tokenizers/clip.js';
import { normalizePixelsOnDevice } from '../train/batch_inputs.js';
import { EMPTY_PROMPT, readManifest, settingsDifferences, shardName, writeManifest, CacheError, type CacheManifest, type CacheSettings, type MomentsFormat } from './manifest.js';

export interface CacheBuildOptions {
  modelPath: string;
  /** A VAE folder replacing the pipeline's (--pretrained_vae_model_name_or_path). */
  vaeFolder?: string;
  settings: CacheSettings;
  dataset: PreferenceDataset;
  outputDir: string;
  device: torch.Device;
  /** Images per VAE call (and captions per text-encoder call). */
  batchSize: number;
  rowsPerShard: number;
  numWorkers: number;
}

export interface CacheBuildEvents {
  info(msg: string): void;
  progress(p: { rowsDone: number; rowsTotal: number; bad: number }): void;
}

export interface CacheBuildResult {
  rows: number;
  shards: number;
  /** Shards this call wrote (the rest were there from an earlier, interrupted build). */
  shardsWritten: number;
  bad: BadRow[];
  /** Size of all shard files. */
  bytes: number;
}

function shardBytes(dir: string, m: CacheManifest): number {
  return m.shards.reduce((sum, f) => sum + (f ? statSync(join(dir, f)).size : 0), 0);
}

interface Encoders {
  vae: AutoencoderKL;
  textEncoder: CLIPTextModel | null;
  textEncoder2: CLIPTextModelWithProjection | null;
  tokenizer: CLIPTokenizer | null;
  tokenizer2: CLIPTokenizer | null;
}

function loadEncoders(o: CacheBuildOptions): Encoders {
  const dtype = o.settings.weight_dtype;
  const load = { device: o.device, dtype };
  const m = o.modelPath;
  const folder = (name: string) => (existsSync(join(m, name, 'config.json')) ? join(m, name) : null);
  const te = folder('text_encoder');
  const te2 = folder('text_encoder_2');
  const enc: Encoders = {
    vae: loadVAE(o.vaeFolder ?? join(m, 'vae'), load),
    textEncoder: te ? loadCLIPTextModel(te, load) : null,
    textEncoder2: te2 ? loadCLIPTextModelWithProjection(te2, load) : null,
    tokenizer: existsSync(join(m, 'tokenizer')) ? CLIPTokenizer.fromFolder(join(m, 'tokenizer')) : null,
    tokenizer2: existsSync(join(m, 'tokenizer_2')) ? CLIPTokenizer.fromFolder(join(m, 'tokenizer_2')) : null,
  };
  for (const model of [enc.vae, enc.textEncoder, enc.textEncoder2]) model?.requiresGrad_(false).eval();
  return enc;
}

function disposeEncoders(e: Encoders): void {
  for (const model of [e.vae, e.textEncoder, e.textEncoder2]) model?.dispose();
}

/** Text conditioning of captions, as the training step computes it: [n, 77, D] (and SDXL's pooled [n, D2]). */
function encodeText(e: Encoders, kind: 'sd' | 'sdxl', captions: string[]): { text: torch.Tensor; pooled: torch.Tensor | null } {
  return torch.tidy(() => torch.noGrad(() => {
    if (kind === 'sdxl') {
      const { promptEmbeds, pooled } = encodeSdxlPrompt(e, captions);
      return { text: promptEmbeds, pooled };
    }
    if (!e.textEncoder || !e.tokenizer) throw new Error('an SD pipeline needs text_encoder and tokenizer');
    const device = e.textEncoder.parameters()[0]!.device;
    const ids = torch.tensor(e.tokenizer.encodeBatch(captions).map((x) => x.inputIds), { dtype: 'int64', device });
    return { text: e.textEncoder.forward(ids).lastHiddenState, pooled: null };
  }));
}

/** One row read and transformed: uint8 CHW per (image, view), or why it cannot be used. */
type PreparedRow = { row: number; captions: string[]; views: Uint8Array[] } | { bad: BadRow };

async function prepareRow(r: PairRow, row: number, o: CacheBuildOptions, pool: TransformPool): Promise<PreparedRow> {
  const caption = r.caption;
  if (caption === null || (Array.isArray(caption) && caption.length === 0)) return { bad: { row, reason: 'null_caption' } };
  const images = o.settings.images_per_row === 2 ? [r.image0, r.image1] : [r.image0];
  for (const img of images) if (!(img instanceof Uint8Array)) return { bad: { row, reason: 'missing_image', detail: img.missing } };
  const flips = o.settings.hflip === 'both' ? [false, true] : [false];
  try {
    const views = await Promise.all(images.flatMap((img) => flips.map((hflip) => pool.run({ bytes: img as Uint8Array, resolution: o.settings.resolution, crop: null, hflip }))));
    return { row, captions: Array.isArray(caption) ? caption : [caption], views };
  } catch (e) {
    if (e instanceof ImageDecodeError) return { bad: { row, reason: 'undecodable_image', detail: e.message } };
    throw e;
  }
}

async function prepareRows(rows: number[], o: CacheBuildOptions, pool: TransformPool): Promise<PreparedRow[]> {
  const out: PreparedRow[] = [];
  // a few rows at a time: bounded memory, with enough in flight to keep the workers busy
  const step = Math.max(4, 2 * o.numWorkers);
  for (let i = 0; i < rows.length; i += step) {
    out.push(...await Promise.all(rows.slice(i, i + step).map(async (row): Promise<PreparedRow> => {
      let r: PairRow;
      try {
        [r] = (await o.dataset.source.read([row])) as [PairRow];
      } catch (e) {
        // a damaged parquet page or tar member: a bad row, as in training
        return { bad: { row, reason: 'unreadable_row', detail: (e as Error).message.split('\n')[0] } };
      }
      return prepareRow(r, row, o, pool);
    })));
  }
  return out;
}

/** Encodes a shard's prepared rows into its tensors (host copies), chunk by chunk. */
function encodeShard(e: Encoders, o: CacheBuildOptions, prepared: PreparedRow[]): Map<string, torch.HostTensor> {
  const good = prepared.filter((p): p is Extract<PreparedRow, { views: Uint8Array[] }> => 'views' in p);
  const res = o.settings.resolution;
  const views = good.flatMap((p) => p.views);
  const moments: torch.Tensor[] = [];
  for (let i = 0; i < views.length; i += o.batchSize) {
    const chunk = views.slice(i, i + o.batchSize);
    moments.push(torch.tidy(() => torch.noGrad(() => {
      const u8 = torch.fromTypedArray(Buffer.concat(chunk), [chunk.length, 3, res, res]);
      const x = normalizePixelsOnDevice(torch.toDeviceNonBlocking(u8, o.device)).to({ dtype: o.settings.weight_dtype });
      return e.vae.encode(x).parameters.keep();
    })));
  }
  const captions = good.flatMap((p) => p.captions);
  const texts: torch.Tensor[] = [];
  const pooled: torch.Tensor[] = [];
  for (let i = 0; i < captions.length; i += o.batchSize) {
    const t = encodeText(e, o.settings.kind, captions.slice(i, i + o.batchSize));
    texts.push(t.text.keep());
    if (t.pooled) pooled.push(t.pooled.keep());
  }
  return torch.tidy(() => {
    const allMoments = moments.length ? torch.cat(moments) : null;
    const allText = texts.length ? torch.cat(texts) : null;
    const allPooled = pooled.length ? torch.cat(pooled) : null;
    for (const t of [...moments, ...texts, ...pooled]) t.dispose();
    const named = new Map<string, torch.Tensor>();
    const perRow = o.settings.images_per_row * (o.settings.hflip === 'both' ? 2 : 1);
    let v = 0;
    let c = 0;
    for (const p of good) {
      const m = allMoments!.narrow(0, v, perRow);
      named.set(`${p.row}.moments`, m.reshape([o.settings.images_per_row, perRow / o.settings.images_per_row, ...m.shape.slice(1)]));
      named.set(`${p.row}.text`, allText!.narrow(0, c, p.captions.length));
      if (allPooled) named.set(`${p.row}.pooled`, allPooled.narrow(0, c, p.captions.length));
      v += perRow;
      c += p.captions.length;
    }
    return torch.snapshotTensors(named);
  });
}

/** The memory format of the VAE encoder's output on this device, for one image and for two. */
function momentsFormat(vae: AutoencoderKL, o: CacheBuildOptions): CacheManifest['vae']['moments_memory_format'] {
  const probe = (n: number): MomentsFormat => torch.tidy(() => torch.noGrad(() => {
    const r = o.settings.resolution;
    const p = vae.encode(torch.zeros([n, 3, r, r], { device: o.device, dtype: o.settings.weight_dtype })).parameters;
    return !p.isContiguous() && p.isContiguous('channelsLast') ? 'channelsLast' : 'contiguous';
  }));
  return { single: probe(1), batched: probe(2) };
}

/** The manifest of a new build, or the existing one when resuming (refused if made with other settings). */
function startManifest(o: CacheBuildOptions, e: CacheManifest['vae'], rows: number[], labels: number[]): CacheManifest {
  if (existsSync(join(o.outputDir, 'manifest.json'))) {
    const m = readManifest(o.outputDir);
    const diff = settingsDifferences(m.settings, o.settings);
    if (m.rows_per_shard !== o.rowsPerShard) diff.push(`rows per shard: ${m.rows_per_shard} -> ${o.rowsPerShard}`);
    if (JSON.stringify(m.rows) !== JSON.stringify(rows)) diff.push(`the rows to cache (${m.rows.length} -> ${rows.length})`);
    if (diff.length) {
      throw new CacheError(o.outputDir, `holds a cache made with other settings (${diff.join('; ')}): finish it with its settings, or use another --output_dir`);
    }
    return m;
  }
  return {
    format: 'diffusion-dpo latent cache', version: 1, settings: o.settings, vae: e, model: o.modelPath,
    rows_per_shard: o.rowsPerShard, rows, labels, shards: [], bad: [], complete: false,
  };
}

export async function buildLatentCache(o: CacheBuildOptions, events: CacheBuildEvents): Promise<CacheBuildResult> {
  mkdirSync(o.outputDir, { recursive: true });
  // shards in row order, whatever order --max_train_samples left the kept rows in
  const rows = [...o.dataset.indices].sort((a, b) => a - b);
  const meta = await o.dataset.source.scanMeta();
  const labels = rows.map((r) => meta[r]!.label0!);
  const enc = loadEncoders(o);
  const pool = new TransformPool(o.numWorkers);
  try {
    const m = startManifest(o, { scaling_factor: enc.vae.config.scalingFactor, latent_channels: enc.vae.config.latentChannels, moments_memory_format: momentsFormat(enc.vae, o) }, rows, labels);
    if (m.complete) {
      events.info(`${o.outputDir} is complete already (${m.rows.length - m.bad.length} rows cached, ${m.bad.length} unusable)`);
      return { rows: m.rows.length, shards: m.shards.length, shardsWritten: 0, bad: m.bad, bytes: shardBytes(o.outputDir, m) };
    }
    const emptyPath = join(o.outputDir, EMPTY_PROMPT);
    if (!existsSync(emptyPath)) {
      const empty = encodeText(enc, o.settings.kind, ['']);
      const named = new Map([['text', empty.text.squeeze(0)], ...(empty.pooled ? [['pooled', empty.pooled.squeeze(0)] as [string, torch.Tensor]] : [])]);
      await torch.writeSafetensorsAsync(emptyPath, torch.snapshotTensors(named));
      for (const t of [empty.text, empty.pooled, ...named.values()]) t?.dispose();
    }
    const shardCount = Math.ceil(rows.length / o.rowsPerShard);
    const todo = Array.from({ length: shardCount }, (_, i) => i).filter((i) => !m.shards[i] || !existsSync(join(o.outputDir, m.shards[i]!)));
    if (todo.length < shardCount) events.info(`resuming: ${shardCount - todo.length} of ${shardCount} shards are done`);
    const shardRows = (i: number) => rows.slice(i * o.rowsPerShard, (i + 1) * o.rowsPerShard);
    let done = (shardCount - todo.length) * o.rowsPerShard;
    // the next shard's rows are read and transformed while this one is encoded
    let next = todo.length ? prepareRows(shardRows(todo[0]!), o, pool) : null;
    for (let k = 0; k < todo.length; k++) {
      const i = todo[k]!;
      const prepared = await next!;
      next = k + 1 < todo.length ? prepareRows(shardRows(todo[k + 1]!), o, pool) : null;
      const tensors = encodeShard(enc, o, prepared);
      const name = shardName(i);
      await torch.writeSafetensorsAsync(join(o.outputDir, name), tensors, { rows: JSON.stringify(prepared.filter((p) => 'views' in p).map((p) => (p as { row: number }).row)) });
      const bad = prepared.flatMap((p) => ('bad' in p ? [p.bad] : []));
      m.bad = [...m.bad.filter((b) => !bad.some((x) => x.row === b.row)), ...bad].sort((a, b) => a.row - b.row);
      m.shards[i] = name;
      writeManifest(o.outputDir, m);
      done += shardRows(i).length;
      events.progress({ rowsDone: Math.min(done, rows.length), rowsTotal: rows.length, bad: m.bad.length });
    }
    m.complete = true;
    writeManifest(o.outputDir, m);
    return { rows: rows.length, shards: shardCount, shardsWritten: todo.length, bad: m.bad, bytes: shardBytes(o.outputDir, m) };
  } finally {
    await pool.close();
    disposeEncoders(enc);
  }
}
