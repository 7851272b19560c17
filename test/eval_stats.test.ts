// The statistics of `diffusion-dpo eval` on plain numbers, each checked against values worked out
// by hand (the quantiles are numpy's np.quantile defaults).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Rng } from '../src/data/rng.js';
import { bootstrapMeanOverGroups, clopperPearson, mean, median, outcome, quantile, winRate } from '../src/eval/stats.js';

describe('eval statistics', () => {
  test('mean and median', () => {
    assert.equal(mean([1, 2, 3, 4]), 2.5);
    assert.equal(mean([-0.5]), -0.5);
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([21.25, 20.5]), 20.875);
    assert.throws(() => mean([]), /mean of no values/);
    assert.throws(() => median([1, Number.NaN]), /median: NaN is not a finite number/);
  });

  test('quantiles interpolate linearly between order statistics (numpy\'s default)', () => {
    const xs = [1, 2, 3, 4];
    assert.equal(quantile(xs, 0), 1);
    assert.equal(quantile(xs, 1), 4);
    assert.equal(quantile(xs, 0.25), 1.75); // np.quantile([1,2,3,4], 0.25)
    assert.ok(Math.abs(quantile(xs, 0.975) - 3.925) < 1e-12); // np.quantile([1,2,3,4], 0.975)
    assert.equal(quantile([0, 10], 0.025), 0.25);
    assert.equal(quantile([7], 0.5), 7);
    assert.throws(() => quantile(xs, 1.5), /not in \[0, 1\]/);
  });

  test('outcomes and win rates: a win 1, a tie 0.5, a loss 0', () => {
    assert.equal(outcome(0.3, 0.2), 1);
    assert.equal(outcome(0.2, 0.2), 0.5);
    assert.equal(outcome(0.1, 0.2), 0);
    assert.deepEqual(winRate([3, 1, 2, 5], [1, 1, 4, 0]), { wins: 2, ties: 1, losses: 1, rate: 0.625 });
    assert.deepEqual(winRate([1], [2]), { wins: 0, ties: 0, losses: 1, rate: 0 });
    assert.throws(() => winRate([1, 2], [1]), /must pair up/);
    assert.throws(() => outcome(Number.NaN, 1), /scores must be finite/);
  });

  test('the bootstrap resamples prompts: an exact small case', () => {
    // the generator's first draws for seed 7 over 2 groups: 0,0 | 1,1 | 1,0 | 0,0
    const rng = new Rng(7);
    assert.deepEqual(Array.from({ length: 8 }, () => rng.int(2)), [0, 0, 1, 1, 1, 0, 0, 0]);
    // group 0 holds a win and a tie (sum 1.5 over 2 pairs), group 1 a loss (0 over 1 pair):
    // the resamples' win rates are 3/4, 0/2, 1.5/3, 3/4 -> sorted 0, 0.5, 0.75, 0.75;
    // their 25% and 75% quantiles are 0.375 and 0.75
    assert.deepEqual(bootstrapMeanOverGroups([[1, 0.5], [0]], { resamples: 4, seed: 7, level: 0.5 }), { low: 0.375, high: 0.75 });
  });

  test('the bootstrap: degenerate cases and determinism', () => {
    // every prompt won: no uncertainty left
    assert.deepEqual(bootstrapMeanOverGroups([[1, 1], [1]], { resamples: 2000, seed: 0, level: 0.95 }), { low: 1, high: 1 });
    // one prompt won and one lost: resampled rates are 0, 0.5 or 1, each extreme with probability 1/4
    assert.deepEqual(bootstrapMeanOverGroups([[1], [0]], { resamples: 2000, seed: 0, level: 0.95 }), { low: 0, high: 1 });
    const groups = Array.from({ length: 40 }, (_, i) => [i % 3 === 0 ? 0 : 1, i % 5 === 0 ? 0.5 : 1]);
    const a = bootstrapMeanOverGroups(groups, { resamples: 2000, seed: 3, level: 0.95 });
    assert.deepEqual(bootstrapMeanOverGroups(groups, { resamples: 2000, seed: 3, level: 0.95 }), a);
    const rate = mean(groups.flat());
    assert.ok(a.low < rate && rate < a.high, `${rate} in [${a.low}, ${a.high}]`);
    assert.notDeepEqual(bootstrapMeanOverGroups(groups, { resamples: 2000, seed: 4, level: 0.95 }), a);
    assert.throws(() => bootstrapMeanOverGroups([], { resamples: 10, seed: 0, level: 0.95 }), /over no groups/);
    assert.throws(() => bootstrapMeanOverGroups([[1]], { resamples: 0, seed: 0, level: 0.95 }), /resamples 0/);
  });

  test('Clopper-Pearson intervals equal scipy.stats.beta quantiles', () => {
    // scipy 1.x: beta.ppf(0.025, k, n - k + 1), beta.ppf(0.975, k + 1, n - k)
    const cases: [number, number, number, number][] = [
      [96, 96, 0.9623030783764125, 1], [0, 10, 0, 0.3084971078187607], [5, 10, 0.18708602844739855, 0.8129139715526015],
      [7, 20, 0.15390920478454118, 0.5921885345328282], [90, 96, 0.8689149641980591, 0.9767204122692275],
    ];
    for (const [k, n, low, high] of cases) {
      const ci = clopperPearson(k, n);
      assert.ok(Math.abs(ci.low - low) < 1e-9 && Math.abs(ci.high - high) < 1e-9, `${k}/${n}: ${JSON.stringify(ci)} vs ${low}, ${high}`);
    }
    assert.throws(() => clopperPearson(3, 2), /0 <= k <= n/);
    assert.throws(() => clopperPearson(1.5, 4), /integers/);
  });
});
