// Real architectures (../shared/fixtures/architectures), the SD/SDXL models and the reward models' CLIPs: built at full size on the 'meta' device
// (no memory), our state-dict keys, order, shapes and dtypes equal diffusers'/transformers', and
// parameter counts match exactly.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { AutoencoderKL, CLIPModel, CLIPTextModel, CLIPTextModelWithProjection, OpenClipModel, UNet2DConditionModel } from '../src/models/index.js';
import { fixturesDir } from './helpers/fixtures.js';

const dir = join(fixturesDir, 'architectures');
interface Keys { param_count: number; state_dict: [string, number[], string][] }

const MODELS: [string, (cfg: Record<string, unknown>) => torch.nn.Module][] = [
  ['sd15-unet', (c) => new UNet2DConditionModel(c, { device: 'meta' })],
  ['sdxl-unet', (c) => new UNet2DConditionModel(c, { device: 'meta' })],
  ['sd15-vae', (c) => new AutoencoderKL(c, { device: 'meta' })],
  ['sdxl-vae', (c) => new AutoencoderKL(c, { device: 'meta' })],
  ['sd15-text_encoder', (c) => new CLIPTextModel(c, { device: 'meta' })],
  ['sdxl-text_encoder', (c) => new CLIPTextModel(c, { device: 'meta' })],
  ['sdxl-text_encoder_2', (c) => new CLIPTextModelWithProjection(c, { device: 'meta' })],
  // the reward models: PickScore and OpenAI's ViT-L/14 (transformers), HPSv2 / LAION ViT-H-14 (open_clip)
  ['pickscore-clip-vit-h-14', (c) => new CLIPModel(c, { device: 'meta' })],
  ['clip-vit-large-patch14', (c) => new CLIPModel(c, { device: 'meta' })],
  ['openclip-vit-h-14', (c) => new OpenClipModel(c, { device: 'meta' })],
];

describe('real architectures', () => {
  for (const [name, build] of MODELS) {
    test(`${name}: keys, order, shapes, dtypes and parameter count`, () => {
      const keys = JSON.parse(readFileSync(join(dir, `${name}.keys.json`), 'utf8')) as Keys;
      const config = JSON.parse(readFileSync(join(dir, `${name}.config.json`), 'utf8')) as Record<string, unknown>;
      const model = build(config);
      try {
        const ours = [...model.stateDict()].map(([k, t]) => [k, t.shape, t.dtype === 'float32' ? 'float32' : t.dtype]);
        const theirs = keys.state_dict.map(([k, s, d]) => [k, s, d.replace('torch.', '')]);
        assert.equal(ours.length, theirs.length, 'number of state-dict entries');
        for (let i = 0; i < theirs.length; i++) assert.deepEqual(ours[i], theirs[i], `entry ${i}`);
        assert.equal(model.numParameters(), keys.param_count);
      } finally {
        model.dispose();
      }
    });
  }
});
