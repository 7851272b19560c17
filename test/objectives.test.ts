// The pairwise objectives (src/train/objectives.ts) on worked examples computed by hand from their
// formulas, their gradients' directions, and each one end to end on the tiny SD pipeline: MaPO
// without a reference UNet; the objective is part of the run's signature, and the flags that only
// apply to one objective are refused with another.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { needsReference, pairLoss, PAIR_LOSS_TYPES } from '../src/train/objectives.js';
import { parseTrainArgs } from '../src/train/args.js';
import { resolveTrainConfig } from '../src/train/config.js';
import { metricsRows, runTrain, tinyTrainingSetup } from './helpers/train_cli.js';

/** Predictions whose per-sample MSE against a zero target is `mses` (first half preferred), in float64 so the worked values hold to 1e-9. */
function predWithMse(mses: number[], requiresGrad = false): torch.Tensor {
  const t = torch.tensor(mses.map(Math.sqrt), { dtype: 'float64' }).reshape([mses.length, 1, 1, 1]);
  return requiresGrad ? t.requiresGrad_(true) : t;
}

const zero = () => torch.zeros([2, 1, 1, 1], { dtype: 'float64' });
const item = (t: torch.Tensor) => t.item();

describe('worked examples: m(w) = 0.3, m(l) = 0.5, m_ref(w) = m_ref(l) = 0.4, so Δ = -0.2 and -Δ/2 = 0.1', () => {
  const model = () => predWithMse([0.3, 0.5]);
  const ref = () => predWithMse([0.4, 0.4]);
  test('sigmoid, β = 10: -log σ(1) = log(1 + e^-1) = 0.3132617', () => {
    torch.tidy(() => {
      const out = pairLoss('sigmoid', model(), ref(), zero(), { beta: 10 });
      assert.ok(Math.abs(item(out.loss) - 0.31326168751822286) < 1e-9);
      assert.equal(item(out.implicitAcc), 1);
      assert.ok(Math.abs(item(out.margin) - 1) < 1e-9, 'the reward margin β·(−½Δ)');
      assert.ok(out.dpo, 'the sigmoid objective keeps Diffusion-DPO\'s intermediate values');
    });
  });
  test('hinge, β = 5: relu(1 - 5 x 0.1) = 0.5; β = 10: relu(0) = 0', () => {
    torch.tidy(() => {
      const h = pairLoss('hinge', model(), ref(), zero(), { beta: 5 });
      assert.ok(Math.abs(item(h.loss) - 0.5) < 1e-9);
      assert.ok(Math.abs(item(h.margin) - 0.5) < 1e-9);
      assert.deepEqual(h.refLosses!.toArray().map((v) => Math.round(v * 1e9) / 1e9), [0.4, 0.4]);
      assert.ok(Math.abs(item(pairLoss('hinge', model(), ref(), zero(), { beta: 10 }).loss)) < 1e-9);
    });
  });
  test('ipo, β = 10: (0.1 - 1/20)^2 = 0.0025; the pair is pulled to the margin 1/(2β)', () => {
    torch.tidy(() => {
      const out = pairLoss('ipo', model(), ref(), zero(), { beta: 10 });
      assert.ok(Math.abs(item(out.loss) - 0.0025) < 1e-9);
      assert.ok(Math.abs(item(out.rawRefLoss!) - 0.4) < 1e-9);
      // at -Δ/2 = 0.05 exactly, the loss is zero
      assert.ok(Math.abs(item(pairLoss('ipo', predWithMse([0.3, 0.4]), ref(), zero(), { beta: 10 }).loss)) < 1e-12);
    });
  });
  test('mapo (β_mapo 0.1, c 0.5, T 1000), m(w) = 0.3, m(l) = 0.3002: 0.3 - 0.1 log σ(1000 (f(0.3) - f(0.3002))) = 0.3669679; no reference', () => {
    torch.tidy(() => {
      const out = pairLoss('mapo', predWithMse([0.3, 0.3002]), null, zero(), { beta: 5000, betaMapo: 0.1, mapoSnrValue: 0.5, numTrainTimesteps: 1000 });
      assert.ok(Math.abs(item(out.loss) - 0.366967867665497) < 1e-9, `${item(out.loss)}`);
      assert.equal(item(out.implicitAcc), 1, 'm(w) < m(l): ranked right');
      assert.equal(out.rawRefLoss, null);
      assert.equal(out.refLosses, null);
      assert.ok(Math.abs(item(out.margin) - 0.04750104203410377) < 1e-9, 'T·(f(m(w)) − f(m(l)))');
      assert.equal(needsReference('mapo'), false);
      assert.ok(PAIR_LOSS_TYPES.filter((t) => t !== 'mapo').every(needsReference));
    });
  });
});

describe('gradients', () => {
  test('every reference-based objective lowers m(w) relative to m(l) while the pair is below its margin', () => {
    for (const type of ['sigmoid', 'hinge', 'ipo'] as const) {
      torch.tidy(() => {
        // -Δ/2 = 0 < margin: each objective pushes the preferred MSE down and the dispreferred up
        const p = predWithMse([0.4, 0.4], true);
        pairLoss(type, p, predWithMse([0.4, 0.4]), zero(), { beta: 10 }).loss.backward();
        const [gw, gl] = p.grad!.toArray();
        assert.ok(gw! > 0 && gl! < 0, `${type}: d/dpred = ${gw}, ${gl}`);
      });
    }
  });
  test('hinge has no gradient once the margin is met; MaPO always pulls m(w) down', () => {
    torch.tidy(() => {
      const p = predWithMse([0.3, 0.5], true);
      pairLoss('hinge', p, predWithMse([0.4, 0.4]), zero(), { beta: 20 }).loss.backward();
      assert.ok(p.grad!.toArray().every((g) => g === 0), `${p.grad!.toArray()}`);
      const q = predWithMse([0.3, 0.5], true);
      pairLoss('mapo', q, null, zero(), { beta: 0, betaMapo: 0.1, mapoSnrValue: 0.5, numTrainTimesteps: 1000 }).loss.backward();
      assert.ok(q.grad!.toArray()[0]! > 0, 'the preferred image\'s MSE term');
    });
  });
});

describe('training with each objective', () => {
  const setup = tinyTrainingSetup('dpo-objectives-', ['--train_batch_size', '2', '--max_train_steps', '3', '--learning_rate', '1e-3', '--checkpointing_steps', '3']);
  const { dir, flags } = setup;
  const data = setup.data;

  for (const type of ['hinge', 'ipo', 'mapo', 'kto'] as const) {
    test(`--loss_type ${type}: trains, logs, and saves`, async () => {
      const out = join(dir, type);
      const r = await runTrain(flags(out, ['--loss_type', type]));
      assert.equal(r.code, 0, r.err);
      assert.match(r.err, new RegExp(`objective: ${type}`));
      const rows = metricsRows(out);
      assert.equal(rows.length, 3);
      assert.ok(rows.every((x) => Number.isFinite(x.train_loss) && x.implicit_acc_accumulated! >= 0));
      // diagnostics: the reward margin's mean and spread, the preferred and dispreferred images' MSEs
      assert.ok(rows.every((x) => Number.isFinite(x.reward_margin_mean) && x.reward_margin_std! >= 0 && x.model_mse_w! > 0 && x.model_mse_l! > 0));
      if (type === 'mapo') {
        assert.match(r.err, /no reference UNet/);
        assert.ok(rows.every((x) => !('ref_mse_unaccumulated' in x) && !('ref_mse_w' in x)), 'no reference MSE without a reference model');
      } else {
        assert.ok(rows.every((x) => Number.isFinite(x.ref_mse_unaccumulated) && Number.isFinite(x.ref_mse_w) && Number.isFinite(x.ref_mse_l)));
      }
    });
  }

  test('--loss_type kto on unpaired like/dislike rows {caption, image, label}: one image per sample, SFT on the same rows keeps the liked ones', async () => {
    // the pairs' images as single rows: the preferred one liked, the other disliked (in words, as users write them)
    const unpaired = join(dirname(data()), 'unpaired.jsonl');
    const rows = readFileSync(data(), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { caption: string; image_0: string; image_1: string; label_0: number });
    writeFileSync(unpaired, rows.flatMap((r) => {
      const [w, l] = r.label_0 === 1 ? [r.image_0, r.image_1] : [r.image_1, r.image_0];
      return [{ caption: r.caption, image: w, label: 'like' }, { caption: r.caption, image: l, label: 0 }];
    }).map((o) => JSON.stringify(o)).join('\n') + '\n');
    const out = join(dir, 'kto-unpaired');
    const r = await runTrain(flags(out, ['--loss_type', 'kto']).map((a) => (a === data() ? unpaired : a)));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /16 labelled single images/);
    assert.match(r.err, /plan: 3 updates of 2 x 1 x 1 = 2 images/);
    assert.ok(metricsRows(out).every((x) => Number.isFinite(x.train_loss) && x.implicit_acc_accumulated! >= 0));
    assert.ok(Math.abs(metricsRows(out)[0]!.train_loss! - 0.5) < 1e-6, 'at the start model = reference: 1 − σ(0)');
    const sft = await runTrain(flags(join(dir, 'sft-unpaired'), ['--sft', '--max_train_steps', '1']).map((a) => (a === data() ? unpaired : a)));
    assert.equal(sft.code, 0, sft.err);
    assert.match(sft.err, /8 kept/, 'SFT keeps the 8 liked images');
    // DPO cannot use single images
    const dpo = await runTrain(flags(join(dir, 'dpo-unpaired'), []).map((a) => (a === data() ? unpaired : a)));
    assert.equal(dpo.code, 1);
    assert.match(dpo.err, /DPO needs pairs .*--loss_type kto on single images with a per-image label column/);
  });

  test('resuming with another objective is refused, naming loss_type', async () => {
    const r = await runTrain(flags(join(dir, 'hinge'), ['--loss_type', 'ipo', '--max_train_steps', '4']));
    assert.equal(r.code, 1);
    assert.match(r.err, /loss_type: "hinge" -> "ipo"/);
  });
});

describe('KTO worked examples (per image: g = m_ref − m, z = max(0, mean g), loss = mean λ_y (1 − σ(β sgn(y) (g − z))))', () => {
  const labels = () => torch.tensor([1, 0], { dtype: 'float64' });
  test('m = (0.3, 0.5), m_ref = (0.4, 0.4), β = 10: g = (0.1, −0.1), z = 0, loss = 1 − σ(1) = 0.2689414', () => {
    torch.tidy(() => {
      const out = pairLoss('kto', predWithMse([0.3, 0.5]), predWithMse([0.4, 0.4]), zero(), { beta: 10, labels: labels() });
      assert.ok(Math.abs(item(out.loss) - 0.2689414213699951) < 1e-9, `${item(out.loss)}`);
      assert.equal(item(out.implicitAcc), 1);
      assert.deepEqual(out.margin.toArray().map((v) => Math.round(v * 1e9) / 1e9), [1, 1]);
    });
  });
  test('m = (0.2, 0.5): z = 0.05 is taken off g, loss = 1 − σ(1.5) = 0.1824255; λ_D = 2 weighs the desirable image twice: 0.2736383', () => {
    torch.tidy(() => {
      const out = pairLoss('kto', predWithMse([0.2, 0.5]), predWithMse([0.4, 0.4]), zero(), { beta: 10, labels: labels() });
      assert.ok(Math.abs(item(out.loss) - 0.18242552380635635) < 1e-9, `${item(out.loss)}`);
      const weighted = pairLoss('kto', predWithMse([0.2, 0.5]), predWithMse([0.4, 0.4]), zero(), { beta: 10, labels: labels(), lambdaDesirable: 2, lambdaUndesirable: 1 });
      assert.ok(Math.abs(item(weighted.loss) - 0.2736382857095345) < 1e-9, `${item(weighted.loss)}`);
      assert.deepEqual(out.byPreference.model.map(item).map((v) => Math.round(v * 1e6) / 1e6), [0.2, 0.5], 'desirable and undesirable MSEs apart (float32)');
    });
  });
  test('a negative batch mean of g is not subtracted (z is clamped at 0); the gradient lowers the desirable image\'s error and raises the undesirable one\'s', () => {
    torch.tidy(() => {
      const q = predWithMse([0.5, 0.3], true);
      const out = pairLoss('kto', q, predWithMse([0.4, 0.4]), zero(), { beta: 10, labels: labels() });
      // g = (−0.1, 0.1), mean 0: x = (−1, −1), loss = 1 − σ(−1)
      assert.ok(Math.abs(item(out.loss) - (1 - 1 / (1 + Math.E))) < 1e-9);
      out.loss.backward();
      const [gw, gl] = q.grad!.toArray() as [number, number];
      assert.ok(gw > 0 && gl < 0, `${gw}, ${gl}`);
    });
  });
});

describe('flags', () => {
  const base = ['--pretrained_model_name_or_path', 'm', '--dataset_name', 'd'];
  const resolve = (args: string[]) => resolveTrainConfig(parseTrainArgs([...base, ...args]), { env: {}, cudaDevices: 0 });
  test('--loss_type sft is --sft; --sft with another objective, and MaPO\'s flags with another, are refused', () => {
    assert.equal(resolve(['--loss_type', 'sft']).objective.method, 'sft');
    assert.throws(() => resolve(['--sft', '--loss_type', 'hinge']), /cannot be combined with --loss_type hinge/);
    assert.throws(() => resolve(['--beta_mapo', '0.2']), /--beta_mapo applies to --loss_type mapo/);
    assert.match(resolve(['--loss_type', 'mapo', '--beta_dpo', '100']).notes.join('\n'), /--beta_dpo has no part in MaPO/);
    assert.equal(resolve(['--loss_type', 'kto']).objective.betaDpo, 1000, 'Diffusion-KTO\'s default β');
    assert.equal(resolve(['--loss_type', 'kto', '--beta_dpo', '300']).objective.betaDpo, 300);
    assert.throws(() => resolve(['--kto_lambda_desirable', '2']), /--kto_lambda_desirable applies to --loss_type kto/);
    assert.throws(() => resolve(['--loss_type', 'kto', '--latent_cache', 'c']), /kto cannot train from --latent_cache/);
  });
});
