// What a pipeline's parts require of each other and of image sizes, checked from their config.json
// files alone, before any weights load or any output is written:
//   - image sizes: a multiple of the VAE's downsampling (2^(levels-1): 8 for SD and SDXL) times the
//     UNet's (2^(levels-1): 8 for SD, 4 for SDXL), so that every skip connection lines up;
//   - a UNet in a pipeline: the latent channels of the VAE, the text encoders' width as its
//     cross-attention width (SDXL: both encoders side by side), and SDXL's added conditioning
//     exactly when the pipeline is an SDXL one.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCLIPTextConfig } from './clip_text.js';
import { parseUNetConfig, type UNetConfig } from './unet_2d_condition.js';
import { parseVAEConfig, type VAEConfig } from './autoencoder_kl.js';
import type { RawConfig } from './config.js';
import { UserError } from '../util/errors.js';

export class CompatibilityError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'CompatibilityError';
  }
}

function readJson(path: string): RawConfig {
  if (!existsSync(path)) throw new CompatibilityError(`${path}: no such file`);
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as RawConfig;
  } catch (e) {
    throw new CompatibilityError(`${path}: invalid JSON (${(e as Error).message})`);
  }
}

/** The configs of a pipeline folder that sizes and UNets are checked against. */
export interface PipelineShape {
  folder: string;
  kind: 'sd' | 'sdxl';
  vae: VAEConfig;
  unet: UNetConfig;
  /** The width of the text conditioning the UNet cross-attends to. */
  textWidth: number;
}

export function readPipelineShape(folder: string, o: { vaeFolder?: string; unetFolder?: string } = {}): PipelineShape {
  const index = readJson(join(folder, 'model_index.json'));
  const kind = String(index._class_name).includes('XL') ? 'sdxl' : 'sd';
  const has = (name: string) => Array.isArray(index[name]) && (index[name] as unknown[])[0] !== null;
  const width = (name: string) => (has(name) ? parseCLIPTextConfig(readJson(join(folder, name, 'config.json'))).hiddenSize : 0);
  return {
    folder,
    kind,
    vae: parseVAEConfig(readJson(join(o.vaeFolder ?? join(folder, 'vae'), 'config.json'))),
    unet: parseUNetConfig(readJson(join(o.unetFolder ?? join(folder, 'unet'), 'config.json'))),
    textWidth: kind === 'sdxl' ? width('text_encoder') + width('text_encoder_2') : width('text_encoder'),
  };
}

/** The multiple every image side must be: the VAE's scale factor times the UNet's downsampling. */
export function pixelMultiple(s: PipelineShape, unet: UNetConfig = s.unet): number {
  return 2 ** (s.vae.blockOutChannels.length - 1) * 2 ** (unet.blockOutChannels.length - 1);
}

/** Refuses an image side (resolution, height, width) the models cannot use, naming the flag. */
export function checkImageSide(s: PipelineShape, flag: string, value: number, unet: UNetConfig = s.unet): void {
  const m = pixelMultiple(s, unet);
  if (!(Number.isInteger(value) && value >= m && value % m === 0)) {
    throw new CompatibilityError(`${flag} ${value}: ${s.folder} needs a positive multiple of ${m} ` +
      `(the VAE downsamples by ${2 ** (s.vae.blockOutChannels.length - 1)}, the UNet by ${2 ** (unet.blockOutChannels.length - 1)} more); ` +
      `the nearest are ${Math.max(m, Math.floor(value / m) * m)} and ${Math.ceil(Math.max(value, 1) / m) * m}`);
  }
}

/** The ways a UNet does not fit a pipeline (empty: it fits). */
export function unetMismatches(s: PipelineShape, unet: UNetConfig): string[] {
  const out: string[] = [];
  const sdxlUnet = unet.additionEmbedType === 'text_time';
  if (sdxlUnet !== (s.kind === 'sdxl')) out.push(`it is ${sdxlUnet ? 'an SDXL' : 'an SD 1.x/2.x'} UNet and the pipeline is ${s.kind === 'sdxl' ? 'SDXL' : 'SD 1.x/2.x'}`);
  if (unet.inChannels !== s.vae.latentChannels) out.push(`it takes ${unet.inChannels} input channels, the VAE makes ${s.vae.latentChannels}`);
  const cross = [...new Set(unet.crossAttentionDim)];
  if (s.textWidth && cross.some((d) => d !== s.textWidth)) out.push(`its cross-attention width is ${cross.join('/')}, the text encoder${s.kind === 'sdxl' ? 's give' : ' gives'} ${s.textWidth}`);
  return out;
}

/** Reads the UNet config at `unetFolder` and refuses it, with every reason, when it does not fit the pipeline. */
export function checkUNetFits(s: PipelineShape, unetFolder: string): UNetConfig {
  const unet = parseUNetConfig(readJson(join(unetFolder, 'config.json')));
  const bad = unetMismatches(s, unet);
  if (bad.length) throw new CompatibilityError(`${unetFolder} does not fit ${s.folder}: ${bad.join('; ')}`);
  return unet;
}
