// Checkpoints written in the background: the snapshot is what is written (later in-place updates of
// the live tensors do not leak in), the files are byte-identical to a save on the training thread,
// and a write that fails part-way leaves no folder that looks like a checkpoint and earlier ones intact.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { trainedUNet } from '../src/train/trained_weights.js';
import { loadUNet, type UNet2DConditionModel } from '../src/models/index.js';
import { writeTinyPipeline } from './helpers/tiny_pipeline.js';
import { checkpointDirs, saveCheckpoint, snapshotCheckpoint, writeCheckpoint, type TrainerState } from '../src/train/checkpoint.js';

const dir = mkdtempSync(join(tmpdir(), 'dpo-ckpt-async-'));
let unet: UNet2DConditionModel;
let optimizer: torch.optim.AdamW;

const state = {
  version: 2, globalStep: 1, loader: { epoch: 0, cursor: 2, step: 1 }, scheduler: { name: 'constant', lastEpoch: 1 }, scaler: null,
  generators: [], run: null, history: [{ step: 1, train_loss: 0.5 }],
} as unknown as TrainerState;

/** One AdamW update on a made-up loss, so the optimizer has state to save. */
function update(): void {
  torch.tidy(() => {
    optimizer.zeroGrad();
    let loss = torch.zeros([]);
    for (const p of unet.parameters()) loss = loss.add(p.square().sum());
    loss.backward();
    optimizer.step();
  });
}

function files(folder: string, sub = ''): string[] {
  return readdirSync(join(folder, sub), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(folder, join(sub, e.name)) : [join(sub, e.name)])).sort();
}

before(() => {
  writeTinyPipeline(join(dir, 'model'), 1);
  unet = loadUNet(join(dir, 'model', 'unet'));
  optimizer = new torch.optim.AdamW(unet.parameters(), { lr: 1e-2 });
  update();
});
after(() => {
  optimizer.dispose();
  unet.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('checkpoints written in the background', () => {
  test('the same bytes as a save on the training thread, from the state at the snapshot', async () => {
    const snap = snapshotCheckpoint(1, trainedUNet(unet), optimizer, state);
    const syncPath = saveCheckpoint(join(dir, 'sync'), 1, trainedUNet(unet), optimizer, state, null);
    // the run moves on while the snapshot is written: the checkpoint must not see these updates
    const write = writeCheckpoint(join(dir, 'async'), snap, null);
    update();
    const asyncPath = await write;
    assert.deepEqual(files(asyncPath), ['optimizer.json', 'optimizer.safetensors', 'trainer_state.json', 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors']);
    assert.deepEqual(files(asyncPath), files(syncPath));
    for (const f of files(syncPath)) assert.ok(readFileSync(join(asyncPath, f)).equals(readFileSync(join(syncPath, f))), `${f} differs`);
    // and the live weights did change after the snapshot
    const saved = torch.loadSafetensors(join(asyncPath, 'unet', 'diffusion_pytorch_model.safetensors'));
    const live = unet.stateDict().get('conv_in.weight')!;
    assert.ok(!torch.tidy(() => saved.get('conv_in.weight')!.eq(live).all().item()), 'the update after the snapshot changed the weights');
    for (const t of saved.values()) t.dispose();
  });

  test('a write that fails part-way leaves earlier checkpoints and no partial folder', async () => {
    const out = join(dir, 'failing');
    await writeCheckpoint(out, snapshotCheckpoint(1, trainedUNet(unet), optimizer, state), null);
    const bad = snapshotCheckpoint(2, trainedUNet(unet), optimizer, { ...state, globalStep: 2 });
    // a name the safetensors format forbids: the optimizer file fails after the UNet's files were written
    bad.optimizer.set('__metadata__', { dtype: 'float32', shape: [1], data: Buffer.alloc(4) });
    await assert.rejects(writeCheckpoint(out, bad, null), /cannot save checkpoint .*checkpoint-2: .*'__metadata__' cannot be a tensor name.*earlier checkpoints are untouched/);
    assert.deepEqual(readdirSync(out), ['checkpoint-1'], 'no temporary folder left behind');
    assert.deepEqual(checkpointDirs(out).map((c) => c.step), [1]);
    assert.ok(existsSync(join(out, 'checkpoint-1', 'optimizer.safetensors')));
  });

  test('--checkpoints_total_limit prunes only after the new checkpoint is complete', async () => {
    const out = join(dir, 'limit');
    for (const step of [1, 2, 3]) await writeCheckpoint(out, snapshotCheckpoint(step, trainedUNet(unet), optimizer, { ...state, globalStep: step }), 2);
    assert.deepEqual(checkpointDirs(out).map((c) => c.step), [2, 3]);
  });
});
