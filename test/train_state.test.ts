// Pieces of the training state that the end-to-end runs cannot show on a CPU machine: every
// generator's state round-trips through what a checkpoint stores (CUDA devices are listed beside
// the CPU when there are any), and frozen-model offload keeps host tensors as the masters and
// computes on a device copy during each call (the device is the CPU here; the mechanism is the
// same for CUDA).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { generatorDevices, generatorStates, setGeneratorStates } from '../src/train/checkpoint.js';
import { OffloadPlacement, residentPlacement } from '../src/train/placement.js';

describe('generator states in checkpoints', () => {
  test('every default generator is saved and restored: the draws after a restore repeat the draws after the save', () => {
    const devices = generatorDevices();
    assert.equal(devices[0], 'cpu');
    assert.equal(devices.length, 1 + (torch.cuda.isAvailable() ? torch.cuda.deviceCount() : 0));
    torch.manualSeed(123);
    torch.tidy(() => torch.randn([5]));
    const saved = JSON.parse(JSON.stringify(generatorStates())) as ReturnType<typeof generatorStates>;
    const draw = () => torch.tidy(() => devices.map((d) => torch.randn([4], { device: d }).toArray()));
    const first = draw();
    draw(); // move on
    assert.deepEqual(setGeneratorStates(saved), []);
    assert.deepEqual(draw(), first);
  });

  test('a saved device this machine lacks is reported, not silently skipped', () => {
    const saved = generatorStates(['cpu']);
    const missing = setGeneratorStates([...saved, { device: 'cuda:7', state: saved[0]!.state }], ['cpu']);
    assert.deepEqual(missing, ['cuda:7']);
  });
});

describe('frozen-model placement', () => {
  test('offload: host masters between calls, a device copy during a call, identical results', () => torch.tidy(() => {
    torch.manualSeed(0);
    const lin = new torch.nn.Linear(4, 3);
    const x = torch.randn([2, 4]);
    const expected = torch.noGrad(() => lin.forward(x)).toArray();
    const placement = new OffloadPlacement('cpu');
    placement.place(lin);
    const master = lin.weight.detach(); // shares the host master's storage
    const w = lin.weight;
    let during = false;
    const y = placement.run(lin, (device) => {
      assert.equal(device, 'cpu');
      during = !w.sharesStorageWith(master) && torch.tidy(() => w.sub(master).abs().max().item()) === 0;
      return torch.noGrad(() => lin.forward(x));
    });
    assert.ok(during, 'during the call the weight is a copy of the master');
    assert.ok(w.sharesStorageWith(master), 'after the call the weight is the host master again (nothing copied back)');
    assert.deepEqual(y.toArray(), expected);
    const again = placement.run(lin, () => torch.noGrad(() => lin.forward(x)).toArray());
    assert.deepEqual(again, expected);
    assert.throws(() => placement.run(new torch.nn.Linear(2, 2), () => 0), /place\(\) the module first/);
    placement.dispose();
    lin.dispose();
  }));

  test('resident: the module computes where it is', () => {
    const lin = new torch.nn.Linear(2, 2);
    assert.equal(residentPlacement.run(lin, (d) => d), 'cpu');
    lin.dispose();
  });
});
