// LoRA: the adapters' arithmetic against its formula, peft's initialisation, switching off, merging;
// the files (diffusers 0.20 computes the same UNet output from a file we write as our adapters and
// our merged UNet do; peft and kohya layouts read to the same function; bad files refused by
// name); and LoRA-DPO training end to end (the reference is the UNet with its adapters off, only
// the adapters change and are checkpointed, resume is bit-identical, the result samples as merged).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { diffusersLoraStateDict, loadUNet, LORA_WEIGHTS_NAME, readLoraFile, disposeLoraFile, attachLora, mergeLora, type UNet2DConditionModel } from '../src/models/index.js';
import { writeTinyPipeline, writeWarmPreferenceSet } from './helpers/tiny_pipeline.js';
import { fixturesDir, testFixtures } from './helpers/fixtures.js';
import { metricsRows, runCli, runTrain } from './helpers/train_cli.js';
import { fixtureAdapters } from './fixtures/lora/make_lora_file.js';

const { Linear, Conv2d, LoraAdapters } = torch.nn;
const dir = mkdtempSync(join(tmpdir(), 'dpo-lora-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const maxDiff = (a: torch.Tensor, b: torch.Tensor) => torch.tidy(() => a.double().sub(b.double()).abs().max().item());
const randomize = (adapters: torch.nn.LoraAdapters, seed: number) => {
  const gen = new torch.Generator('cpu', seed);
  torch.noGrad(() => {
    for (const p of adapters.parameters()) p.normal_(0, 0.1, gen);
  });
};

describe('adapters on a layer', () => {
  test('Linear: a fresh adapter changes nothing; with weights, y = base(x) + (α/r)·x·Aᵀ·Bᵀ; off gives the base exactly; merging gives the same output', () => {
    torch.tidy(() => {
      torch.manualSeed(0);
      const layer = new Linear(6, 5);
      const x = torch.randn([3, 6]);
      const base = layer.forward(x);
      const adapters = new LoraAdapters();
      const a = adapters.add('proj', layer, { rank: 2, alpha: 6, dropout: 0 });
      assert.equal(maxDiff(layer.forward(x), base), 0, 'B = 0 at initialisation');
      // peft: A ~ kaiming_uniform(a = √5), whose bound is 1/√fan_in
      const bound = 1 / Math.sqrt(6);
      assert.ok(a.down.weight.abs().max().item() <= bound && a.down.weight.abs().max().item() > bound / 2);
      randomize(adapters, 1);
      const expected = x.double().add(0).matmul(a.down.weight.double().t()).matmul(a.up.weight.double().t()).mul(3).add(base.double());
      const y = layer.forward(x);
      assert.ok(maxDiff(y, expected) < 1e-6, `${maxDiff(y, expected)}`);
      assert.equal(maxDiff(adapters.disabled(() => layer.forward(x)), base), 0);
      assert.ok(adapters.enabled, 'switched back on');
      adapters.mergeAndRemove();
      assert.equal(layer.adapter, null);
      assert.ok(maxDiff(layer.forward(x), y) < 1e-6);
    });
  });

  test('Conv2d 3×3, stride 2, padding 1: the adapter is a conv with the base kernel then a 1×1; merging folds both', () => {
    torch.tidy(() => {
      torch.manualSeed(1);
      const layer = new Conv2d(4, 6, 3, { stride: 2, padding: 1 });
      const x = torch.randn([2, 4, 9, 9]);
      const base = layer.forward(x);
      const adapters = new LoraAdapters();
      const a = adapters.add('conv', layer, { rank: 3, alpha: 3, dropout: 0 });
      assert.deepEqual(a.down.weight.shape, [3, 4, 3, 3]);
      assert.deepEqual(a.up.weight.shape, [6, 3, 1, 1]);
      randomize(adapters, 2);
      const delta = torch.F.conv2d(torch.F.conv2d(x, a.down.weight, null, { stride: 2, padding: 1 }), a.up.weight);
      const y = layer.forward(x);
      assert.ok(maxDiff(y, base.add(delta)) < 1e-5);
      adapters.mergeAndRemove(0.5);
      assert.ok(maxDiff(layer.forward(x), base.add(delta.mul(0.5))) < 1e-5, 'merged at scale 0.5');
    });
  });

  test('dropout acts on the adapter\'s input in training only', () => {
    torch.tidy(() => {
      torch.manualSeed(3);
      const layer = new Linear(64, 8);
      const x = torch.ones([4, 64]);
      const adapters = new LoraAdapters();
      adapters.add('proj', layer, { rank: 4, alpha: 4, dropout: 0.5 });
      randomize(adapters, 4);
      adapters.train(false);
      const evalOut = layer.forward(x);
      assert.equal(maxDiff(layer.forward(x), evalOut), 0, 'no dropout in eval mode');
      adapters.train(true);
      assert.ok(maxDiff(layer.forward(x), evalOut) > 1e-3, 'dropout in training');
    });
  });

  test('injection by pattern: the default targets, globs, and patterns that name nothing or the wrong kind of layer', () => {
    const unet = loadUNet(join(fixturesDir, 'tiny-sd', 'unet'));
    try {
      const attn = LoraAdapters.inject(unet, { rank: 2, alpha: 2, dropout: 0, targets: ['to_q', 'to_k', 'to_v', 'to_out.0'] });
      const paths = [...attn.entries()].map(([p]) => p);
      // tiny SD: 2 down + 1 mid + 3 up transformer blocks, two attentions each, four projections each
      assert.equal(paths.length, 6 * 2 * 4);
      assert.ok(paths.every((p) => /\.attn[12]\.(to_q|to_k|to_v|to_out\.0)$/.test(p)));
      attn.remove();
      const glob = LoraAdapters.inject(unet, { rank: 2, alpha: 2, dropout: 0, targets: ['down_blocks.*.conv1'] });
      assert.ok([...glob.entries()].every(([p, a]) => p.startsWith('down_blocks.') && p.endsWith('.conv1') && a.layer instanceof Conv2d));
      glob.remove();
      assert.throws(() => LoraAdapters.inject(unet, { rank: 2, alpha: 2, dropout: 0, targets: ['to_qq'] }), /LoRA target 'to_qq' matches no layer/);
      assert.throws(() => LoraAdapters.inject(unet, { rank: 2, alpha: 2, dropout: 0, targets: ['attn1'] }), /'attn1' names a Attention .*not a Linear or Conv2d/);
    } finally {
      unet.dispose();
    }
  });

  test('gradients reach the adapters alone, and are bit-identical with gradient checkpointing', () => {
    const grads = (checkpointing: boolean) => {
      const unet = loadUNet(join(fixturesDir, 'tiny-sd', 'unet'));
      unet.requiresGrad_(false).enableGradientCheckpointing(checkpointing);
      const adapters = LoraAdapters.inject(unet, { rank: 2, alpha: 4, dropout: 0, targets: ['to_q', 'to_v', 'conv1', 'ff.net.2'] });
      randomize(adapters, 5);
      torch.manualSeed(6);
      torch.tidy(() => {
        const out = unet.forward(torch.randn([2, 4, 8, 8]), torch.tensor([3, 700]), torch.randn([2, 5, 32])).sample;
        out.square().mean().backward();
      });
      const g = adapters.parameters().map((p) => p.grad!.toArray());
      assert.ok(unet.parameters().every((p) => p.grad === null), 'the base UNet gets no gradient');
      adapters.remove();
      unet.dispose();
      return g;
    };
    const plain = grads(false);
    assert.ok(plain.every((g) => g.some((v) => v !== 0)));
    assert.deepEqual(grads(true), plain);
  });
});

describe('LoRA files', () => {
  const tinyUNet = () => loadUNet(join(fixturesDir, 'tiny-sd', 'unet'));
  const reference = () => torch.loadSafetensors(join(testFixtures, 'lora', 'diffusers_0.20_output.safetensors'));
  const run = (unet: UNet2DConditionModel, r: Map<string, torch.Tensor>) => torch.noGrad(() => unet.forward(r.get('sample')!, r.get('timesteps')!, r.get('encoder_hidden_states')!).sample);

  test('our writer still writes the committed fixture file, tensor for tensor', () => {
    const unet = tinyUNet();
    const adapters = fixtureAdapters(unet);
    torch.tidy(() => {
      const ours = diffusersLoraStateDict(unet, adapters);
      const committed = torch.loadSafetensors(join(testFixtures, 'lora', 'tiny_sd_lora.safetensors'));
      assert.deepEqual([...ours.keys()].sort(), [...committed.keys()].sort());
      for (const [k, t] of ours) assert.equal(maxDiff(t, committed.get(k)!), 0, k);
      // diffusers 0.20's layout: processors with all four projections on every attention layer, other layers as <layer>.lora
      assert.ok(ours.has('unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora.down.weight'), 'to_k filler');
      assert.ok(ours.has('unet.mid_block.resnets.0.conv1.lora.up.weight'));
    });
    adapters.remove();
    unet.dispose();
  });

  test('diffusers 0.20 (load_lora_weights\' UNet path) computes what our adapters and our merged UNet compute from the file', () => {
    const r = reference();
    const unet = tinyUNet();
    try {
      assert.ok(maxDiff(run(unet, r), r.get('base')!) < 1e-5, 'the base UNets agree');
      const adapters = fixtureAdapters(unet);
      const ours = run(unet, r);
      const moved = maxDiff(r.get('with_lora')!, r.get('base')!);
      assert.ok(moved > 0.1, `the LoRA changes the output (${moved})`);
      assert.ok(maxDiff(ours, r.get('with_lora')!) < 1e-4, `adapters vs diffusers: ${maxDiff(ours, r.get('with_lora')!)}`);
      adapters.remove();
      const file = readLoraFile(join(testFixtures, 'lora', 'tiny_sd_lora.safetensors'), { unet });
      assert.equal(file.format, 'diffusers');
      assert.equal(file.zeroLayers, 12, 'the 12 attention layers\' to_k filler is dropped');
      mergeLora(file);
      disposeLoraFile(file);
      const merged = run(unet, r);
      assert.ok(maxDiff(merged, r.get('with_lora')!) < 1e-4, `merged vs diffusers: ${maxDiff(merged, r.get('with_lora')!)}`);
    } finally {
      unet.dispose();
      for (const t of r.values()) t.dispose();
    }
  });

  /** The fixture's adapters written in another layout; reading it back must give the same UNet function. */
  function sameFunctionFrom(layout: (adapters: torch.nn.LoraAdapters) => { tensors: Map<string, torch.Tensor>; metadata?: Record<string, string> }, name: string) {
    const r = reference();
    const unet = tinyUNet();
    try {
      const adapters = fixtureAdapters(unet);
      const expected = run(unet, r);
      const { tensors, metadata } = layout(adapters);
      const path = join(dir, name);
      torch.saveSafetensors(path, tensors, metadata);
      adapters.remove();
      const file = readLoraFile(path, { unet });
      const sets = attachLora(file);
      disposeLoraFile(file);
      const got = run(unet, r);
      assert.ok(maxDiff(got, expected) < 1e-5, `${name}: ${maxDiff(got, expected)}`);
      for (const s of sets.values()) s.remove();
      return file.format;
    } finally {
      unet.dispose();
      for (const t of r.values()) t.dispose();
    }
  }

  test('peft\'s layout (lora_A / lora_B, α in lora_adapter_metadata) reads to the same function', () => {
    const format = sameFunctionFrom((adapters) => {
      const tensors = new Map<string, torch.Tensor>();
      for (const [path, a] of adapters.entries()) {
        tensors.set(`unet.${path}.lora_A.weight`, a.down.weight);
        tensors.set(`unet.${path}.lora_B.weight`, a.up.weight);
      }
      return { tensors, metadata: { lora_adapter_metadata: JSON.stringify({ 'unet.lora_alpha': 8, 'unet.r': 4 }) } };
    }, 'peft.safetensors');
    assert.equal(format, 'peft');
  });

  test('kohya\'s layout (lora_unet_ names with "_", lora_down / lora_up, alpha keys) reads to the same function', () => {
    const format = sameFunctionFrom((adapters) => {
      const tensors = new Map<string, torch.Tensor>();
      for (const [path, a] of adapters.entries()) {
        const k = `lora_unet_${path.replaceAll('.', '_')}`;
        tensors.set(`${k}.lora_down.weight`, a.down.weight);
        tensors.set(`${k}.lora_up.weight`, a.up.weight);
        tensors.set(`${k}.alpha`, torch.tensor([8]));
      }
      return { tensors };
    }, 'kohya.safetensors');
    assert.equal(format, 'kohya');
  });

  test('an attention layer whose projections have other ranks is written at one rank (zero-padded: diffusers 0.20 loads a processor at one rank) and reads back to the same function', () => {
    const unet = tinyUNet();
    const r = reference();
    try {
      const attn = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1';
      const set = new LoraAdapters();
      const layer = (p: string) => [...unet.namedModules()].find(([q]) => q === p)![1] as torch.nn.Linear;
      set.add(`${attn}.to_q`, layer(`${attn}.to_q`), { rank: 2, alpha: 2, dropout: 0 });
      set.add(`${attn}.to_v`, layer(`${attn}.to_v`), { rank: 6, alpha: 3, dropout: 0 });
      randomize(set, 9);
      const expected = run(unet, r);
      const sd = diffusersLoraStateDict(unet, set);
      const ranks = ['to_q', 'to_k', 'to_v', 'to_out'].map((p) => sd.get(`unet.${attn}.processor.${p}_lora.down.weight`)!.shape[0]);
      assert.deepEqual(ranks, [6, 6, 6, 6]);
      const path = join(dir, 'mixed.safetensors');
      torch.saveSafetensors(path, sd);
      set.remove();
      const file = readLoraFile(path, { unet });
      const sets = attachLora(file);
      disposeLoraFile(file);
      assert.ok(maxDiff(run(unet, r), expected) < 1e-5);
      for (const s of sets.values()) s.remove();
    } finally {
      unet.dispose();
      for (const t of r.values()) t.dispose();
    }
  });

  test('bad files are refused naming the key: unknown keys, missing layers, misfit shapes, LoHa, absent components', () => {
    const unet = tinyUNet();
    const write = (name: string, tensors: Record<string, torch.Tensor>) => {
      const path = join(dir, name);
      torch.saveSafetensors(path, tensors);
      return path;
    };
    try {
      torch.tidy(() => {
        const d = torch.zeros([2, 32]).add(1);
        const u = torch.ones([32, 2]);
        const cases: [Record<string, torch.Tensor>, RegExp][] = [
          [{ 'unet.conv_in.weight': d }, /not LoRA weights in a known layout: unet.conv_in.weight/],
          [{ 'unet.down_blocks.9.attn.lora.down.weight': d, 'unet.down_blocks.9.attn.lora.up.weight': u }, /unet layer down_blocks.9.attn: no Linear or Conv2d layer of that name/],
          [{ 'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight': torch.ones([2, 7]), 'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.up.weight': u }, /down \[2, 7\] .* do not fit a layer of weight \[32, 32\]/],
          [{ 'lora_unet_conv_in.hada_w1_a': d }, /LoHa\/LoKr/],
          [{ 'text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.down.weight': d, 'text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.up.weight': u }, /adapts the text_encoder, which is not loaded here/],
          [{ 'unet.conv_in.lora.down.weight': torch.ones([2, 4, 3, 3]) }, /conv_in: up weight missing/],
        ];
        cases.forEach(([tensors, message], i) => assert.throws(() => readLoraFile(write(`bad-${i}.safetensors`, tensors), { unet }), message));
      });
    } finally {
      unet.dispose();
    }
  });
});

describe('LoRA-DPO training', () => {
  const model = join(dir, 'model');
  let data = '';
  before(async () => {
    writeTinyPipeline(model, 2);
    data = await writeWarmPreferenceSet(join(dir, 'data'), 8, 16, 3);
  });
  const flags = (out: string, extra: string[] = []) => ['--pretrained_model_name_or_path', model, '--dataset_name', data, '--output_dir', out,
    '--resolution', '16', '--train_batch_size', '2', '--max_train_steps', '3', '--learning_rate', '1e-3', '--lr_scheduler', 'constant',
    '--lr_warmup_steps', '0', '--checkpointing_steps', '2', '--mixed_precision', 'no', '--seed', '2', '--lora_rank', '4', '--lora_alpha', '8', ...extra];

  test('the reference is the UNet with its adapters off; only the adapters are checkpointed; the result is pytorch_lora_weights.safetensors', async () => {
    const out = join(dir, 'run');
    const r = await runTrain(flags(out));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /LoRA: \d+ adapters, [\d.]+ M trained parameters .*the reference prediction is the UNet with its adapters off/);
    const rows = metricsRows(out);
    // at initialisation B = 0: the trained and reference predictions are the same, so the loss is log 2
    assert.ok(Math.abs(rows[0]!.train_loss! - Math.LN2) < 1e-6, `${rows[0]!.train_loss}`);
    assert.equal(rows[0]!.model_mse_unaccumulated, rows[0]!.ref_mse_unaccumulated);
    assert.notEqual(rows[2]!.model_mse_unaccumulated, rows[2]!.ref_mse_unaccumulated, 'the adapters moved the model');
    assert.deepEqual(readdirSync(join(out, 'checkpoint-2')).sort(), ['lora_adapters.json', 'lora_adapters.safetensors', 'optimizer.json', 'optimizer.safetensors', 'trainer_state.json']);
    assert.ok(!existsSync(join(out, 'unet')), 'no UNet is written');
    const record = JSON.parse(readFileSync(join(out, 'checkpoint-2', 'lora_adapters.json'), 'utf8')) as { layers: { rank: number; alpha: number }[] };
    assert.ok(record.layers.length > 0 && record.layers.every((l) => l.rank === 4 && l.alpha === 8));
    const f = torch.SafetensorsFile.open(join(out, LORA_WEIGHTS_NAME));
    const meta = JSON.parse(f.metadata.diffusion_dpo!) as { steps: number; objective: string; lora: { rank: number } };
    f.close();
    assert.equal(meta.steps, 3);
    assert.equal(meta.objective, 'sigmoid');
  });

  test('resuming continues bit-identically; changing the LoRA settings on resume is refused', async () => {
    const straight = join(dir, 'run');
    const resumed = join(dir, 'resumed');
    let r = await runTrain(flags(resumed, ['--max_train_steps', '2']));
    assert.equal(r.code, 0, r.err);
    r = await runTrain(flags(resumed));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /resumed from .*checkpoint-2/);
    assert.ok(readFileSync(join(resumed, LORA_WEIGHTS_NAME)).equals(readFileSync(join(straight, LORA_WEIGHTS_NAME))), 'the same adapters as an uninterrupted run');
    r = await runTrain(flags(resumed, ['--lora_rank', '8', '--max_train_steps', '4']));
    assert.equal(r.code, 1);
    assert.match(r.err, /lora: .*"rank":4.* -> .*"rank":8/);
  });

  test('sample --lora and compare --lora equal sampling the merge-lora pipeline; --lora_init continues training from the file', async () => {
    const lora = join(dir, 'run');
    const common = ['--prompt', 'a red square', '--num_inference_steps', '2', '--height', '16', '--width', '16', '--seed', '3'];
    let r = await runCli(['sample', '--pretrained_model_name_or_path', model, '--lora', lora, '--output_dir', join(dir, 's-lora'), ...common]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /LoRA .*pytorch_lora_weights.safetensors \(diffusers layout\): \d+ layers of the unet merged at scale 1/);
    r = await runCli(['merge-lora', '--pretrained_model_name_or_path', model, '--lora', lora, '--output_dir', join(dir, 'merged')]);
    assert.equal(r.code, 0, r.err);
    r = await runCli(['sample', '--pretrained_model_name_or_path', join(dir, 'merged'), '--output_dir', join(dir, 's-merged'), ...common]);
    assert.equal(r.code, 0, r.err);
    r = await runCli(['sample', '--pretrained_model_name_or_path', model, '--output_dir', join(dir, 's-base'), ...common]);
    assert.equal(r.code, 0, r.err);
    const png = (d: string) => readFileSync(join(d, '000-3.png'));
    const pixels = async (d: string) => (await import('sharp')).default(png(d)).raw().toBuffer();
    assert.ok((await pixels(join(dir, 's-lora'))).equals(await pixels(join(dir, 's-merged'))));
    assert.ok(!(await pixels(join(dir, 's-lora'))).equals(await pixels(join(dir, 's-base'))), 'the LoRA changes the image');
    // compare: a --unet column, then two LoRA columns, each from the base models (the second is not applied on top of the first)
    r = await runCli(['compare', '--pretrained_model_name_or_path', model, '--unet', join(dir, 'merged'), '--lora', lora, '--lora', join(dir, 'resumed'),
      '--label', 'merged', '--label', 'lora-a', '--label', 'lora-b', '--output_dir', join(dir, 'cmp'), ...common]);
    assert.equal(r.code, 0, r.err);
    for (const column of ['01-merged', '02-lora-a', '03-lora-b']) assert.ok((await pixels(join(dir, 'cmp', column))).equals(await pixels(join(dir, 's-lora'))), column);
    assert.ok((await pixels(join(dir, 'cmp', '00-base'))).equals(await pixels(join(dir, 's-base'))));
    r = await runCli(['merge-lora', '--pretrained_model_name_or_path', model, '--lora', lora, '--output_dir', join(dir, 'merged')]);
    assert.equal(r.code, 2);
    assert.match(r.err, /is not empty/);

    const cont = join(dir, 'continued');
    r = await runTrain(flags(cont, ['--max_train_steps', '1']).filter((a, i, all) => !['--lora_rank', '--lora_alpha'].includes(a) && !['--lora_rank', '--lora_alpha'].includes(all[i - 1]!)).concat(['--lora_init', lora]));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /LoRA: adapters from/);
    // the adapters start where the file left them: the first update's model MSE is not the base model's
    const first = metricsRows(cont)[0]!;
    assert.notEqual(first.model_mse_unaccumulated, first.ref_mse_unaccumulated);
  });

  test('flags: LoRA settings without LoRA, and --lora_init with explicit settings, are refused', async () => {
    let r = await runTrain(['--pretrained_model_name_or_path', model, '--dataset_name', data, '--lora_alpha', '8']);
    assert.equal(r.code, 2);
    assert.match(r.err, /--lora_alpha applies to LoRA training: add --lora_rank N/);
    r = await runTrain(['--pretrained_model_name_or_path', model, '--dataset_name', data, '--lora_init', 'x', '--lora_rank', '4']);
    assert.equal(r.code, 2);
    assert.match(r.err, /--lora_rank cannot be combined with --lora_init/);
    r = await runTrain(flags(join(dir, 'badtarget'), ['--lora_target_modules', 'nothing_here']));
    assert.equal(r.code, 1);
    assert.match(r.err, /--lora_target_modules: LoRA target 'nothing_here' matches no layer of the model/);
  });
});
