// Loading and saving models: a tiny pipeline saved by us reloads with identical outputs; variants
// and .bin weights load; missing, unexpected and mis-shaped weights give errors that list them.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import * as models from '../src/models/index.js';
import { assertClose } from './helpers/assert.js';
import { fixturesDir, testFixtures } from './helpers/fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'dpo-models-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const tinySd = join(fixturesDir, 'tiny-sd');

function unetOutput(unet: models.UNet2DConditionModel): torch.Tensor {
  return torch.noGrad(() => {
    const g = new torch.Generator('cpu', 0);
    const x = torch.randn([1, 4, 16, 16], { generator: g });
    const ehs = torch.randn([1, 77, 32], { generator: g });
    return unet.forward(x, 500, ehs).sample;
  });
}

describe('pipelines', () => {
  test('a tiny pipeline saved by us reloads with identical outputs and diffusers metadata', () => torch.tidy(() => {
    const p = models.loadPipeline(tinySd);
    assert.equal(p.kind, 'sd');
    const out = join(dir, 'saved');
    models.savePipeline(out, p);
    const q = models.loadPipeline(out);
    assertClose(unetOutput(q.unet), unetOutput(p.unet), 0, 0, 'unet');
    torch.noGrad(() => {
      const ids = torch.tensor([[49406, 320, 1125, 49407]], { dtype: 'int64' });
      assertClose(q.textEncoder!.forward(ids).lastHiddenState, p.textEncoder!.forward(ids).lastHiddenState, 0, 0, 'text encoder');
      const img = torch.rand([1, 3, 32, 32], { generator: new torch.Generator('cpu', 1) });
      assertClose(q.vae.encode(img).mean, p.vae.encode(img).mean, 0, 0, 'vae');
    });
    const cfg = JSON.parse(readFileSync(join(out, 'unet', 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(cfg._class_name, 'UNet2DConditionModel');
    assert.equal(cfg._diffusers_version, '0.20.0');
    assert.deepEqual(cfg.block_out_channels, [32, 64]);
    assert.ok(readFileSync(join(out, 'tokenizer', 'vocab.json')).length > 0);
    models.disposePipeline(p);
    models.disposePipeline(q);
  }));

  test('SDXL pipeline with both text encoders', () => torch.tidy(() => {
    const p = models.loadPipeline(join(fixturesDir, 'tiny-sdxl'));
    assert.equal(p.kind, 'sdxl');
    assert.ok(p.textEncoder && p.textEncoder2);
    assert.equal(p.unet.config.additionEmbedType, 'text_time');
    models.disposePipeline(p);
  }));

  test('dtype conversion and fp16 variant files (loaded as float32 unless a dtype is asked, as from_pretrained)', () => torch.tidy(() => {
    const unet = models.loadUNet(join(tinySd, 'unet'), { dtype: 'bfloat16' });
    assert.equal(unet.conv_in.weight.dtype, 'bfloat16');
    assert.ok(unet.conv_in.weight.requiresGrad);
    unet.dispose();
    // an fp16 variant next to the full-precision file
    const folder = join(dir, 'variant');
    cpSync(join(tinySd, 'vae'), folder, { recursive: true });
    const sd = torch.loadSafetensors(join(folder, 'diffusion_pytorch_model.safetensors'), { dtype: 'float16' });
    torch.saveSafetensors(join(folder, 'diffusion_pytorch_model.fp16.safetensors'), sd);
    const vae32 = models.loadVAE(folder, { variant: 'fp16' });
    assert.equal(vae32.quant_conv.weight.dtype, 'float32');
    vae32.dispose();
    const vae16 = models.loadVAE(folder, { variant: 'fp16', dtype: 'float16' });
    assert.equal(vae16.quant_conv.weight.dtype, 'float16');
    vae16.dispose();
    assert.throws(() => models.loadVAE(folder, { variant: 'bf16' }), /no weights found .*variant 'bf16'/);
  }));

  test('legacy VAE attention names are renamed on load', () => torch.tidy(() => {
    const folder = join(dir, 'legacy-vae');
    cpSync(join(tinySd, 'vae'), folder, { recursive: true });
    const file = join(folder, 'diffusion_pytorch_model.safetensors');
    const sd = torch.loadSafetensors(file);
    const renamed = new Map([...sd].map(([k, t]) => [k.replace('mid_block.attentions.0.to_q.', 'mid_block.attentions.0.query.').replace('mid_block.attentions.0.to_out.0.', 'mid_block.attentions.0.proj_attn.'), t]));
    assert.ok(renamed.has('encoder.mid_block.attentions.0.query.weight'));
    torch.saveSafetensors(file, renamed);
    const vae = models.loadVAE(folder);
    const ref = models.loadVAE(join(tinySd, 'vae'));
    assertClose(vae.encoder.mid_block.stateDict().get('attentions.0.to_q.weight')!, ref.encoder.mid_block.stateDict().get('attentions.0.to_q.weight')!, 0, 0);
    vae.dispose();
    ref.dispose();
  }));
});

describe('loading errors', () => {
  test('missing, unexpected and mis-shaped weights are listed by name', () => torch.tidy(() => {
    const folder = join(dir, 'broken-unet');
    cpSync(join(tinySd, 'unet'), folder, { recursive: true });
    const file = join(folder, 'diffusion_pytorch_model.safetensors');
    const sd = torch.loadSafetensors(file);
    sd.delete('conv_in.bias');
    sd.set('conv_out.weight', torch.zeros([4, 32, 1, 1]));
    sd.set('extra.weight', torch.zeros([1]));
    torch.saveSafetensors(file, sd);
    assert.throws(() => models.loadUNet(folder), (e: Error) => {
      assert.ok(e instanceof models.ModelLoadError);
      assert.match(e.message, /missing keys: conv_in\.bias/);
      assert.match(e.message, /unexpected keys: extra\.weight/);
      assert.match(e.message, /size mismatch: conv_out\.weight \(checkpoint \[4, 32, 1, 1\], model \[4, 32, 3, 3\]\)/);
      return true;
    });
  }));

  test('bad configs name the option', () => {
    const folder = join(dir, 'bad-config');
    cpSync(join(tinySd, 'unet'), folder, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(folder, 'config.json'), JSON.stringify({ ...cfg, down_block_types: ['SimpleCrossAttnDownBlock2D', 'DownBlock2D'] }));
    assert.throws(() => models.loadUNet(folder), /unknown down block type 'SimpleCrossAttnDownBlock2D'/);
    writeFileSync(join(folder, 'config.json'), JSON.stringify({ ...cfg, resnet_time_scale_shift: 'scale_shift' }));
    assert.throws(() => models.loadUNet(folder), /`resnet_time_scale_shift` = "scale_shift" is not supported/);
    writeFileSync(join(folder, 'config.json'), '{nope');
    assert.throws(() => models.loadUNet(folder), /config\.json: invalid JSON/);
    assert.throws(() => models.loadUNet(join(dir, 'nowhere')), /no config\.json/);
    assert.throws(() => models.loadPipeline(join(tinySd, 'unet')), /no model_index\.json/);
  });
});

describe('.bin components', () => {
  test('a transformers text encoder folder with pytorch_model.bin loads through the restricted unpickler', () => torch.tidy(() => {
    const folder = join(testFixtures, 'checkpoints', 'clip_bin');
    const expected = (JSON.parse(readFileSync(join(folder, '..', 'expected.json'), 'utf8')) as Record<string, Record<string, { values: number[] }>>)['clip_bin/pytorch_model.bin']!;
    const model = models.loadCLIPTextModel(folder);
    for (const [k, t] of model.stateDict()) assertClose(t.toArray(), expected[k]!.values, 0, 0, k);
    const out = torch.noGrad(() => model.forward(torch.tensor([[0, 3, 15, 2]], { dtype: 'int64' })));
    assert.deepEqual(out.lastHiddenState.shape, [1, 4, 4]);
    model.dispose();
  }));
});

describe('attention under autocast', () => {
  test('upcast_attention computes attention in float32 even under bf16 autocast (SDPA would be cast back)', () => torch.tidy(() => {
    torch.manualSeed(3);
    const attn = new models.Attention({ queryDim: 16, heads: 2, dimHead: 8, upcastAttention: true });
    const x = torch.randn([2, 5, 16]);
    const ac = { device: 'cpu', dtype: 'bfloat16' } as const;
    const got = torch.noGrad(() => torch.autocast(ac, () => attn.forward(x)));
    // the same computation written out: projections under autocast, attention in float32 outside it
    const expected = torch.noGrad(() => {
      const split = (t: torch.Tensor) => t.view(2, -1, 2, 8).transpose(1, 2);
      const [q, k, v] = torch.autocast(ac, () => [split(attn.to_q.forward(x)), split(attn.to_k.forward(x)), split(attn.to_v.forward(x))]);
      const o = torch.F.scaledDotProductAttention(q!.float(), k!.float(), v!.float()).to('bfloat16');
      return torch.autocast(ac, () => attn.to_out.at(0).forward(o.transpose(1, 2).reshape(2, -1, 16)));
    });
    assert.deepEqual(got.float().toArray(), expected.float().toArray());
    const downcast = torch.noGrad(() => {
      const split = (t: torch.Tensor) => t.view(2, -1, 2, 8).transpose(1, 2);
      return torch.autocast(ac, () => {
        const o = torch.F.scaledDotProductAttention(split(attn.to_q.forward(x)).float(), split(attn.to_k.forward(x)).float(), split(attn.to_v.forward(x)).float());
        return attn.to_out.at(0).forward(o.to('bfloat16').transpose(1, 2).reshape(2, -1, 16));
      });
    });
    assert.notDeepEqual(downcast.float().toArray(), expected.float().toArray(), 'SDPA under autocast really does compute in bf16');
    attn.dispose();
  }));
});
