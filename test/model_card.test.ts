// The generated model card, as a pure function of its description: front matter, the training
// table with "unknown" for what was not recorded, the eval table, and the usage snippet per kind.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  defaultLicense, flattenNumbers, hubIdOf, renderModelCard, type ModelCardDescription, type TrainingFacts,
} from '../src/hub/model_card.js';
import { familyOfLoraShapes, familyOfUNetConfig, skipReason } from '../src/hub/upload_contents.js';

const FACTS: TrainingFacts = {
  baseModel: 'stabilityai/stable-diffusion-xl-base-1.0', unetInit: null, dataset: 'yuvalkirstain/pickapic_v2', objective: 'sigmoid', betaDpo: 5000,
  steps: 2000, effectiveBatch: 2048, learningRate: 1e-8, resolution: 1024, lora: { rank: 8, alpha: 16, targets: ['to_q', 'to_v'], init: 'gaussian' },
};

function card(over: Partial<ModelCardDescription> = {}, facts: Partial<TrainingFacts> = {}): string {
  return renderModelCard({
    repoId: 'me/dpo-xl', revision: 'main', kind: 'lora', family: 'sdxl', license: null, evalJson: null,
    layout: { unetSubfolder: true, loraWeightName: 'pytorch_lora_weights.safetensors', report: false },
    ...over, facts: { ...FACTS, ...facts },
  });
}

describe('model card', () => {
  test('licenses by family; none when the family is unknown', () => {
    assert.equal(defaultLicense('sdxl'), 'openrail++');
    assert.equal(defaultLicense('sd2'), 'openrail++');
    assert.equal(defaultLicense('sd1'), 'creativeml-openrail-m');
    assert.equal(defaultLicense('sd'), null);
    assert.equal(defaultLicense(null), null);
  });

  test('Hub ids: as typed, or from a cache snapshot path; local paths are not ids', () => {
    assert.equal(hubIdOf('runwayml/stable-diffusion-v1-5'), 'runwayml/stable-diffusion-v1-5');
    assert.equal(hubIdOf('/home/a/.cache/huggingface/hub/datasets--yuvalkirstain--pickapic_v2/snapshots/abc/'), 'yuvalkirstain/pickapic_v2');
    assert.equal(hubIdOf('/data/models/sd15'), null);
    assert.equal(hubIdOf('./sd15'), null);
    assert.equal(hubIdOf('../x/y'), null);
    assert.equal(hubIdOf('sd15'), null);
  });

  test('eval.json: numeric leaves, nested keys joined with a dot', () => {
    assert.deepEqual(flattenNumbers({ a: 1, b: { c: 0.5, d: { e: 2 }, s: 'x' }, arr: [1, 2], n: null, t: true }), [['a', 1], ['b.c', 0.5], ['b.d.e', 2]]);
  });

  test('an SDXL LoRA: front matter, every recorded fact, load_lora_weights', () => {
    const c = card();
    assert.ok(c.startsWith(['---', 'license: openrail++', 'base_model: stabilityai/stable-diffusion-xl-base-1.0', 'datasets:', '  - yuvalkirstain/pickapic_v2',
      'tags:', '  - diffusion-dpo', '  - text-to-image', '  - stable-diffusion-xl', '  - lora', 'library_name: diffusers', '---', ''].join('\n')));
    for (const row of ['| objective | Diffusion-DPO (sigmoid loss, as in the paper) |', '| β (beta_dpo) | 5000 |', '| steps (optimizer updates) | 2000 |',
      '| learning rate | 1e-8 |', '| resolution | 1024 px |', '| LoRA rank | 8 |', '| LoRA alpha | 16 |', '| LoRA targets | to_q, to_v |', '| LoRA init | gaussian |']) {
      assert.ok(c.includes(row), row);
    }
    assert.match(c, /pipe\.load_lora_weights\("me\/dpo-xl"\)/);
    assert.match(c, /`openrail\+\+`, the license of Stable Diffusion XL\./);
  });

  test('what is not recorded is "unknown"; a local base model stays out of the front matter and is named by its folder only', () => {
    const c = card({ family: null }, { baseModel: '/home/alice/models/my-sd', dataset: null, betaDpo: null, steps: null, lora: null });
    assert.doesNotMatch(c, /^license:|^base_model:|^datasets:/m);
    assert.doesNotMatch(c, /alice/);
    assert.match(c, /\| base model \| a local model \(`my-sd`\) \|/);
    assert.match(c, /\| dataset \| unknown \|/);
    assert.match(c, /\| β \(beta_dpo\) \| unknown \|/);
    assert.match(c, /\| steps \(optimizer updates\) \| unknown \|/);
    assert.match(c, /\| LoRA rank \| unknown \|/);
    assert.match(c, /DiffusionPipeline\.from_pretrained\("BASE_MODEL", torch_dtype=torch\.float16\)\.to\("cuda"\) {2}# the base model/);
    assert.match(c, /## License\n\nunknown/);
  });

  test('--license wins; MaPO and SFT do not use beta_dpo', () => {
    assert.match(card({ license: 'apache-2.0' }), /^license: apache-2\.0$/m);
    assert.match(card({}, { objective: 'mapo' }), /\| β \(beta_dpo\) \| not used by mapo \|/);
    const sft = card({}, { objective: 'sft' });
    assert.match(sft, /\| objective \| supervised fine-tuning on the preferred images \(SFT\) \|/);
    assert.match(sft, /trained by supervised fine-tuning on the preferred images of human preference pairs, using/);
    assert.doesNotMatch(sft, /Diffusion-DPO\]/, 'an SFT model is not called a DPO one');
  });

  test('usage per kind, with the revision when it is not main', () => {
    const unet = card({ kind: 'unet', revision: 'v2' });
    assert.match(unet, /unet = UNet2DConditionModel\.from_pretrained\("me\/dpo-xl", subfolder="unet", torch_dtype=torch\.float16, revision="v2"\)/);
    assert.match(unet, /DiffusionPipeline\.from_pretrained\("stabilityai\/stable-diffusion-xl-base-1\.0", unet=unet/);
    assert.doesNotMatch(unet, /LoRA rank|- lora/);
    assert.match(card({ kind: 'unet', layout: { unetSubfolder: false, loraWeightName: '', report: false } }), /from_pretrained\("me\/dpo-xl", torch_dtype/);
    assert.match(card({ kind: 'pipeline' }), /pipe = DiffusionPipeline\.from_pretrained\("me\/dpo-xl", torch_dtype=torch\.float16\)/);
    assert.match(card({ revision: 'dev', layout: { unetSubfolder: false, loraWeightName: 'x.safetensors', report: false } }), /load_lora_weights\("me\/dpo-xl", weight_name="x\.safetensors", revision="dev"\)/);
  });

  test('the eval section: a table of numbers; pipes in keys escaped; none without numbers', () => {
    const c = card({ evalJson: { 'hps|v2': 0.27, pick: { score: 21.3 } } });
    assert.match(c, /## Evaluation\n\nFrom `eval\.json` \(uploaded with the model\):\n\n\| metric \| value \|\n\| --- \| --- \|\n\| hps\\\|v2 \| 0\.27 \|\n\| pick\.score \| 21\.3 \|\n/);
    assert.match(card({ evalJson: { note: 'none' } }), /eval\.json holds no numeric entries\./);
  });
});

describe('upload contents', () => {
  test('what is left out', () => {
    assert.equal(skipReason('checkpoint-500/unet/config.json'), 'training checkpoint');
    assert.equal(skipReason('logs/tuning/metrics.jsonl'), 'training logs');
    assert.equal(skipReason('bad_rows.jsonl'), 'list of unusable training rows');
    assert.equal(skipReason('bad_rows.rank1.jsonl'), 'list of unusable training rows');
    assert.equal(skipReason('.git/config'), 'hidden or temporary');
    assert.equal(skipReason('unet/.diffusion_pytorch_model.safetensors.tmp-12-34'), 'hidden or temporary');
    assert.equal(skipReason('unet/x.incomplete'), 'temporary file');
    assert.equal(skipReason('optimizer.safetensors', { checkpointFolder: true }), 'optimizer and trainer state (only resuming needs them)');
    for (const kept of ['report.html', 'eval.json', 'unet/config.json', 'optimizer.safetensors', 'logs', 'model_index.json']) assert.equal(skipReason(kept), null, kept);
  });

  test('the family from a UNet config or a LoRA file\'s shapes', () => {
    assert.equal(familyOfUNetConfig({ cross_attention_dim: 2048, addition_embed_type: 'text_time' }), 'sdxl');
    assert.equal(familyOfUNetConfig({ cross_attention_dim: 1024 }), 'sd2');
    assert.equal(familyOfUNetConfig({ cross_attention_dim: 768 }), 'sd1');
    assert.equal(familyOfUNetConfig({ cross_attention_dim: 32 }), 'sd');
    const k = 'unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora.down.weight';
    assert.equal(familyOfLoraShapes([{ name: k, shape: [4, 768] }]), 'sd1');
    assert.equal(familyOfLoraShapes([{ name: 'lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight', shape: [4, 2048] }]), 'sdxl');
    assert.equal(familyOfLoraShapes([{ name: 'unet.x.attn1.to_q.lora_A.weight', shape: [4, 320] }]), null);
  });
});
