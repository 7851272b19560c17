// The device paths, on the device DPO_TEST_DEVICE names (scripts/gpu-check.sh sets cuda on a GPU
// machine; CI and a plain `npm test` run them on the CPU, so the same code is exercised there):
// generators, uint8 batches scaled on the device, the UNet against the CPU, gradient checkpointing, mixed precision with its grad
// scaler, fused AdamW continuing foreach state, and training runs whose resume is bit-identical
// and whose frozen-model offload changes nothing.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import * as models from '../src/models/index.js';
import { writeTinyPipeline, writeWarmPreferenceSet } from './helpers/tiny_pipeline.js';
import { batchToDevice } from '../src/train/batch_inputs.js';
import { normalizePixels } from '../src/data/transforms.js';
import { assertClose } from './helpers/assert.js';
import { fixturesDir } from './helpers/fixtures.js';
import { assertSameUNet, runTrain } from './helpers/train_cli.js';

const device = (process.env.DPO_TEST_DEVICE ?? 'cpu') as torch.Device;
const cuda = torch.deviceType(device) === 'cuda';
if (cuda && !torch.cuda.isAvailable()) throw new Error('DPO_TEST_DEVICE is cuda but CUDA is not available to this libtorch');
const dir = mkdtempSync(join(tmpdir(), 'dpo-device-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const model = join(dir, 'model');
let data = '';

before(async () => {
  writeTinyPipeline(model, 3);
  data = await writeWarmPreferenceSet(join(dir, 'data'), 16, 16, 4);
});

describe(`tensor layer on ${device}`, () => {
  test('the default generator of the device: its state saved and restored repeats the draws', () => torch.tidy(() => {
    torch.manualSeed(5);
    const g = torch.defaultGenerator(device);
    const state = g.getState();
    const a = torch.randn([6], { device }).toArray();
    g.setState(state);
    assert.deepEqual(torch.randn([6], { device }).toArray(), a);
  }));

  test('fused AdamW on the device continues foreach state saved on the CPU', () => torch.tidy(() => {
    torch.manualSeed(1);
    const cpu = torch.randn([5, 3]).requiresGrad_(true);
    const onDevice = cpu.detach().to({ device }).requiresGrad_(true);
    const foreach = new torch.optim.AdamW([cpu], { lr: 1e-2 });
    cpu.grad = torch.ones([5, 3]);
    foreach.step();
    const resumed = new torch.optim.AdamW([onDevice], { lr: 1e-2, fused: true });
    resumed.loadStateDict(foreach.stateDict());
    torch.noGrad(() => onDevice.copy_(cpu.to({ device })));
    for (const [p, o] of [[cpu, foreach], [onDevice, resumed]] as const) {
      p.grad = torch.full([5, 3], 0.5, { device: p.device });
      o.step();
    }
    assertClose(onDevice.to({ device: 'cpu' }), cpu, 1e-6, 1e-5, 'parameters after the resumed step');
    foreach.dispose();
    resumed.dispose();
  }));
});

describe(`models on ${device}`, () => {
  test('a uint8 batch copied to the device and scaled there equals torchvision\'s float32 arithmetic, bit for bit', () => torch.tidy(() => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const batch = { pixels: all, shape: [1, 1, 16, 16] as [number, number, number, number], captions: [''], rows: [0], inputIds: [[49406, 49407]], epoch: 0, step: 0 };
    const t = batchToDevice(batch, device);
    assert.equal(t.pixelValues!.device, device);
    assert.deepEqual(Array.from(t.pixelValues!.toTypedArray() as Float32Array), Array.from(normalizePixels(all)));
    assert.equal(t.inputIds!.device, device);
    assert.equal(t.inputIds!.dtype, 'int64');
    assert.deepEqual(t.inputIds!.toArray(), [49406, 49407]);
    // the device cannot overtake the copy: the staging buffer may be reused at once
    torch.tidy(() => torch.ones([4096, 256], { dtype: 'uint8' }).mul(0));
    assert.deepEqual(Array.from(t.pixelValues!.toTypedArray() as Float32Array), Array.from(normalizePixels(all)));
  }));

  test('the tiny SD UNet forward and backward match the CPU', () => torch.tidy(() => {
    const folder = join(fixturesDir, 'tiny-sd', 'unet');
    const onCpu = models.loadUNet(folder);
    const onDevice = models.loadUNet(folder, { device });
    const g = new torch.Generator('cpu', 2);
    const x = torch.randn([2, 4, 16, 16], { generator: g });
    const ehs = torch.randn([2, 77, 32], { generator: g });
    const t = torch.tensor([10, 900], { dtype: 'int64' });
    const loss = (u: models.UNet2DConditionModel, dev: torch.Device) => {
      const out = u.forward(x.to({ device: dev }), t.to({ device: dev }), ehs.to({ device: dev })).sample;
      out.pow(2).mean().backward();
      return out;
    };
    assertClose(loss(onDevice, device).to({ device: 'cpu' }), loss(onCpu, 'cpu'), 1e-4, 1e-3, 'UNet output');
    assertClose(onDevice.conv_in.weight.grad!.to({ device: 'cpu' }), onCpu.conv_in.weight.grad!, 1e-5, 1e-3, 'conv_in gradient');
    onCpu.dispose();
    onDevice.dispose();
  }));

  test('gradient checkpointing on the device gives the gradients of a run without it', () => {
    const folder = join(fixturesDir, 'tiny-sdxl', 'unet');
    const unet = models.loadUNet(folder, { device }).train();
    const grads = (ckpt: boolean) => {
      unet.enableGradientCheckpointing(ckpt);
      unet.zeroGrad();
      torch.tidy(() => {
        const g = new torch.Generator('cpu', 4);
        const x = torch.randn([2, 4, 16, 16], { generator: g }).to({ device });
        const ehs = torch.randn([2, 77, 28], { generator: g }).to({ device });
        const added = { textEmbeds: torch.randn([2, 20], { generator: g }).to({ device }), timeIds: torch.tensor([[32, 32, 0, 0, 32, 32], [32, 32, 0, 0, 32, 32]], { device }) };
        unet.forward(x, torch.tensor([5, 600], { dtype: 'int64', device }), ehs, { addedCond: added }).sample.pow(2).mean().backward();
      });
      return torch.tidy(() => torch.cat(unet.parameters().map((p) => p.grad!.flatten())).to({ device: 'cpu' }).keep());
    };
    const plain = grads(false);
    const ckpt = grads(true);
    // bit-identical on the CPU; CUDA's backward kernels may sum in another order
    if (cuda) assertClose(ckpt, plain, 1e-6, 1e-4, 'gradients');
    else assert.deepEqual(ckpt.toArray(), plain.toArray());
    plain.dispose();
    ckpt.dispose();
    unet.dispose();
  });

  test(`mixed precision on ${device}: ${cuda ? 'fp16 autocast with the grad scaler' : 'bf16 autocast'}, the loss in float32, a finite update`, () => torch.tidy(() => {
    const unet = models.loadUNet(join(fixturesDir, 'tiny-sd', 'unet'), { device }).train();
    const dtype: torch.DType = cuda ? 'float16' : 'bfloat16';
    const scaler = cuda ? new torch.GradScaler(device) : null;
    const opt = new torch.optim.AdamW(unet.parameters(), { lr: 1e-4, fused: cuda });
    const g = new torch.Generator('cpu', 6);
    const x = torch.randn([2, 4, 16, 16], { generator: g }).to({ device });
    const ehs = torch.randn([2, 77, 32], { generator: g }).to({ device, dtype });
    const pred = torch.autocast({ device, dtype }, () => unet.forward(x, torch.tensor([3, 300], { dtype: 'int64', device }), ehs).sample).float();
    const loss = pred.sub(x).pow(2).mean();
    assert.equal(loss.dtype, 'float32');
    (scaler ? scaler.scale(loss) : loss).backward();
    const before = unet.conv_in.weight.clone();
    if (scaler) {
      scaler.step(opt);
      scaler.update();
    } else opt.step();
    assert.ok(unet.conv_in.weight.isfinite().all().item(), 'finite weights');
    assert.ok((unet.conv_in.weight.sub(before).abs().max().item() as number) > 0, 'the step moved the weights');
    scaler?.dispose();
    opt.dispose();
    unet.dispose();
  }));
});

describe(`performance levers on ${device}`, () => {
  test('channels-last weights: every convolution weight NHWC, the same outputs within rounding', () => torch.tidy(() => {
    const unet = models.loadUNet(join(fixturesDir, 'tiny-sd', 'unet'), { device }).eval();
    const g = new torch.Generator('cpu', 8);
    const x = torch.randn([2, 4, 16, 16], { generator: g }).to({ device });
    const ehs = torch.randn([2, 77, 32], { generator: g }).to({ device });
    const t = torch.tensor([10, 700], { dtype: 'int64', device });
    const before = torch.noGrad(() => unet.forward(x, t, ehs).sample);
    unet.toMemoryFormat('channelsLast');
    const convs = unet.parameters().filter((p) => p.ndim === 4);
    assert.ok(convs.length > 10 && convs.every((p) => p.isContiguous('channelsLast')), 'NHWC weights');
    // (a 1x1 convolution's weight is both layouts at once)
    assert.ok(convs.filter((p) => p.shape[2]! > 1).every((p) => !p.isContiguous()), '3x3 weights are no longer NCHW');
    assertClose(torch.noGrad(() => unet.forward(x, t, ehs).sample), before, 1e-4, 1e-3, 'output');
    unet.toMemoryFormat('contiguous');
    assert.ok(convs.every((p) => p.isContiguous()));
    unet.dispose();
  }));

  test('SDPA kernel selection: the enabled set is what was asked; math alone gives the same attention', () => torch.tidy(() => {
    const all = torch.sdpBackends();
    assert.deepEqual(all, { flash: true, efficient: true, math: true, cudnn: true }, 'all on by default');
    const g = new torch.Generator('cpu', 9);
    const [q, k, v] = [0, 1, 2].map(() => torch.randn([2, 4, 16, 8], { generator: g }).to({ device }));
    const auto = torch.F.scaledDotProductAttention(q!, k!, v!);
    try {
      assert.deepEqual(torch.sdpBackends({ flash: false, efficient: false, cudnn: false }), { flash: false, efficient: false, math: true, cudnn: false });
      assertClose(torch.F.scaledDotProductAttention(q!, k!, v!), auto, 1e-5, 1e-4, 'math kernel');
      torch.sdpBackends({ flash: false, efficient: false, math: false, cudnn: false });
      assert.throws(() => torch.F.scaledDotProductAttention(q!, k!, v!), /No (viable|available) (backend|kernel)/i, 'no kernel allowed is an error, not a silent fallback');
    } finally {
      torch.sdpBackends(all);
    }
  }));

  test('TF32 and the cuDNN switches read back as set', () => {
    const before = torch.mathSettings();
    torch.setAllowTF32(true);
    assert.equal(torch.mathSettings().tf32Matmul, true);
    torch.setAllowTF32(false);
    assert.equal(torch.mathSettings().tf32Matmul, false);
    torch.setCudnnBenchmark(true);
    torch.useDeterministicAlgorithms(false);
    assert.equal(torch.mathSettings().cudnnBenchmark, true, 'turning determinism off leaves benchmarking alone');
    torch.useDeterministicAlgorithms(true);
    assert.equal(torch.mathSettings().cudnnBenchmark, false, 'determinism turns benchmarking off');
    assert.equal(process.env.CUBLAS_WORKSPACE_CONFIG, ':4096:8', 'and sets what cuBLAS needs');
    torch.useDeterministicAlgorithms(before.deterministic);
    torch.setCudnnBenchmark(before.cudnnBenchmark);
  });
});

describe(`training on ${device}`, () => {
  const flags = (out: string, extra: string[] = []) => ['--pretrained_model_name_or_path', model, '--dataset_name', data, '--output_dir', out,
    '--resolution', '16', '--train_batch_size', '2', '--gradient_accumulation_steps', '2', '--max_train_steps', '4', '--learning_rate', '1e-3',
    '--lr_scheduler', 'constant', '--lr_warmup_steps', '0', '--checkpointing_steps', '2', '--seed', '7', '--device', device, '--deterministic',
    '--mixed_precision', cuda ? 'fp16' : 'no', ...extra];

  test('a resumed run ends as an uninterrupted one: bit-identical on the CPU (every generator of the device restored)', async () => {
    const full = join(dir, 'full');
    const a = await runTrain(flags(full));
    assert.equal(a.code, 0, a.err);
    assert.match(a.err, new RegExp(`device: ${device.replace(':', '\\:')}`));
    const resumed = join(dir, 'resumed');
    cpSync(join(full, 'checkpoint-2'), join(resumed, 'checkpoint-2'), { recursive: true });
    const b = await runTrain(flags(resumed));
    assert.equal(b.code, 0, b.err);
    assert.match(b.err, /resumed from .*checkpoint-2 at step 2/);
    if (cuda) {
      // some CUDA backward kernels (the nearest upsampling's) add with atomics, so even two
      // uninterrupted runs differ in the last bits, and AdamW's first updates magnify that
      torch.tidy(() => {
        const x = torch.loadSafetensors(join(full, 'unet', 'diffusion_pytorch_model.safetensors'));
        const y = torch.loadSafetensors(join(resumed, 'unet', 'diffusion_pytorch_model.safetensors'));
        for (const [k, t] of x) assertClose(y.get(k)!, t, 2e-3, 1e-2, k);
      });
    } else {
      assertSameUNet(full, resumed, 'uninterrupted and resumed');
    }
  });

  test('--channels_last and --sdpa_backend math train to the same weights within rounding', async () => {
    const out = join(dir, 'levers');
    const r = await runTrain(flags(out, ['--channels_last', '--sdpa_backend', 'math']));
    assert.equal(r.code, 0, r.err);
    torch.tidy(() => {
      const x = torch.loadSafetensors(join(dir, 'full', 'unet', 'diffusion_pytorch_model.safetensors'));
      const y = torch.loadSafetensors(join(out, 'unet', 'diffusion_pytorch_model.safetensors'));
      for (const [k, t] of x) assertClose(y.get(k)!, t, 2e-3, 1e-2, k);
    });
  });

  test('--offload_frozen and --gradient_checkpointing leave the trained weights as they are', async () => {
    const both = join(dir, 'offload-ckpt');
    const r = await runTrain(flags(both, ['--offload_frozen', '--gradient_checkpointing']));
    assert.equal(r.code, 0, r.err);
    if (cuda) {
      // the checkpoint replay sums some gradients in another order than CUDA's own backward
      torch.tidy(() => {
        const x = torch.loadSafetensors(join(dir, 'full', 'unet', 'diffusion_pytorch_model.safetensors'));
        const y = torch.loadSafetensors(join(both, 'unet', 'diffusion_pytorch_model.safetensors'));
        for (const [k, t] of x) assertClose(y.get(k)!, t, 1e-4, 1e-3, k);
      });
    } else {
      assertSameUNet(join(dir, 'full'), both, 'plain and offloaded + checkpointed');
    }
  });
});
