// Gradient checkpointing of the UNet (each resnet and each Transformer2DModel of the down, mid and
// up blocks is a segment): on the tiny SD and SDXL UNets, in float32 on the CPU,
// the gradients of every parameter and of the input are bit-identical with and without it (the
// expected values are the plain run's), and an eval-mode or no-grad forward records nothing.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import * as models from '../src/models/index.js';
import { fixturesDir } from './helpers/fixtures.js';

interface Case {
  unet: models.UNet2DConditionModel;
  inputs(): { x: torch.Tensor; t: torch.Tensor; ehs: torch.Tensor; addedCond?: models.AddedCond };
}

function sdCase(): Case {
  const unet = models.loadUNet(join(fixturesDir, 'tiny-sd', 'unet'));
  return {
    unet,
    inputs: () => {
      const g = new torch.Generator('cpu', 0);
      return { x: torch.randn([2, 4, 16, 16], { generator: g }), t: torch.tensor([10, 700], { dtype: 'int64' }), ehs: torch.randn([2, 77, 32], { generator: g }) };
    },
  };
}

function sdxlCase(): Case {
  const unet = models.loadUNet(join(fixturesDir, 'tiny-sdxl', 'unet'));
  return {
    unet,
    inputs: () => {
      const g = new torch.Generator('cpu', 1);
      const textEmbeds = torch.randn([2, 20], { generator: g });
      const timeIds = torch.tensor([[32, 32, 0, 0, 32, 32], [32, 32, 0, 0, 32, 32]]);
      return { x: torch.randn([2, 4, 16, 16], { generator: g }), t: torch.tensor([3, 999], { dtype: 'int64' }), ehs: torch.randn([2, 77, 28], { generator: g }), addedCond: { textEmbeds, timeIds } };
    },
  };
}

/** Gradients of sum(out * w) with respect to every parameter and the input sample, as host arrays. */
function gradients(c: Case, checkpointing: boolean): Map<string, Float32Array> {
  c.unet.enableGradientCheckpointing(checkpointing).train();
  c.unet.zeroGrad();
  const out = new Map<string, Float32Array>();
  torch.tidy(() => {
    const { x, t, ehs, addedCond } = c.inputs();
    x.requiresGrad_(true);
    const pred = c.unet.forward(x, t, ehs, { addedCond }).sample;
    const w = torch.randn(pred.shape, { generator: new torch.Generator('cpu', 9) });
    if (checkpointing) assert.ok(torch.pendingCheckpoints() > 0, 'the forward recorded segments');
    pred.mul(w).sum().backward();
    out.set('sample', x.grad!.toTypedArray() as Float32Array);
  });
  for (const [name, p] of c.unet.namedParameters()) out.set(name, torch.tidy(() => p.grad!.toTypedArray() as Float32Array));
  return out;
}

function assertBitEqual(a: Map<string, Float32Array>, b: Map<string, Float32Array>): void {
  assert.deepEqual([...b.keys()], [...a.keys()]);
  const differing = [...a].filter(([k, v]) => !Buffer.from(v.buffer, v.byteOffset, v.byteLength).equals(Buffer.from(b.get(k)!.buffer, b.get(k)!.byteOffset, b.get(k)!.byteLength)));
  assert.deepEqual(differing.map(([k]) => k), [], 'gradients that are not bit-identical');
}

describe('UNet gradient checkpointing', () => {
  for (const [name, make] of [['tiny SD', sdCase], ['tiny SDXL', sdxlCase]] as const) {
    test(`${name}: every gradient is bit-identical with and without checkpointing`, () => {
      const c = make();
      const plain = gradients(c, false);
      const before = torch.memory().liveTensors;
      const ckpt = gradients(c, true);
      assert.equal(torch.memory().liveTensors, before, 'the replay frees everything it held');
      assert.equal(torch.pendingCheckpoints(), 0);
      assertBitEqual(plain, ckpt);
      c.unet.dispose();
    });
  }

  test('one segment per resnet and per Transformer2DModel; none in eval mode or without grad', () => torch.tidy(() => {
    const c = sdCase();
    c.unet.enableGradientCheckpointing().train();
    const { x, t, ehs } = c.inputs();
    c.unet.forward(x, t, ehs);
    const cfg = c.unet.config;
    const resnets = cfg.layersPerBlock.reduce((s, n) => s + n, 0) + cfg.layersPerBlock.reduce((s, n) => s + n + 1, 0) + 2; // down, up, and the mid block's two
    const crossDown = cfg.downBlockTypes.filter((b) => b === 'CrossAttnDownBlock2D').length * cfg.layersPerBlock[0]!;
    const crossUp = cfg.upBlockTypes.filter((b) => b === 'CrossAttnUpBlock2D').length * (cfg.layersPerBlock[0]! + 1);
    const transformers = crossDown + crossUp + 1;
    assert.equal(torch.pendingCheckpoints(), resnets + transformers);
    torch.discardCheckpoints();
    c.unet.eval();
    c.unet.forward(x, t, ehs);
    assert.equal(torch.pendingCheckpoints(), 0, 'eval mode runs without checkpointing');
    c.unet.train();
    torch.noGrad(() => c.unet.forward(x, t, ehs));
    assert.equal(torch.pendingCheckpoints(), 0, 'no-grad runs without checkpointing');
    c.unet.dispose();
  }));
});

