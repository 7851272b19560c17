// AI feedback: a sidecar of labels flips the training pairs it disagrees with (the loader serves
// the other image first), removes its ties, and is read robustly (a torn last line); `relabel`
// scores every kept pair and resumes; `train --choice_labels` / `--choice_model` train on the
// labels, refuse an incomplete sidecar and a resume with other labels; and the whole loop on tiny
// models: relabel -> train (LoRA) -> eval against the base.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PreferenceDataset } from '../src/data/dataset.js';
import { PairLoader } from '../src/data/loader.js';
import { readChoiceLabels } from '../src/data/choice_labels.js';
import { writeTinyPipeline, writeWarmPreferenceSet } from './helpers/tiny_pipeline.js';
import { fixturesDir } from './helpers/fixtures.js';
import { metricsRows, runCli, runTrain } from './helpers/train_cli.js';

const dir = mkdtempSync(join(tmpdir(), 'dpo-relabel-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let data = '';
const model = join(dir, 'model');
before(async () => {
  writeTinyPipeline(model, 2);
  data = await writeWarmPreferenceSet(join(dir, 'data'), 8, 16, 3);
});
const header = (rows: number) => JSON.stringify({ choice_labels: 1, scorer: 'pickscore: hand-written', dataset: 'tiny', split: 'train', rows });

describe('choice labels in the data layer', () => {
  test('labels that disagree with the human ones swap the pair the loader serves; ties are removed', async () => {
    const human = await PreferenceDataset.open(data);
    const meta = await human.source.scanMeta();
    const file = join(dir, 'inverted.jsonl');
    // every label inverted, except row 0, a tie
    writeFileSync(file, [header(8), ...human.indices.map((row) => JSON.stringify({ row, score_0: 1, score_1: 1, label_0: row === 0 ? 0.5 : 1 - meta[row]!.label0! }))].join('\n') + '\n');
    const relabelled = await PreferenceDataset.open(data, { choiceLabels: readChoiceLabels(file) });
    assert.equal(relabelled.stats.tiesRemoved, 1);
    assert.deepEqual(relabelled.indices, human.indices.filter((r) => r !== 0));
    const batchOf = async (ds: PreferenceDataset) => {
      const loader = new PairLoader(ds, { batchSize: 7, resolution: 16, seed: 1, hflip: false, shuffle: false });
      const b = (await loader.next())!;
      await loader.close();
      return b;
    };
    const [h, r] = [await batchOf(human), await batchOf(relabelled)];
    const plane = 3 * 16 * 16;
    // the same row in both: its two images swapped
    const row = r.rows[0]!;
    const k = h.rows.indexOf(row);
    const hPair = h.pixels!.subarray(k * 2 * plane, (k + 1) * 2 * plane);
    const rPair = r.pixels!.subarray(0, 2 * plane);
    assert.ok(Buffer.from(rPair.subarray(0, plane)).equals(Buffer.from(hPair.subarray(plane))), 'the preferred image is the other one');
    assert.ok(Buffer.from(rPair.subarray(plane)).equals(Buffer.from(hPair.subarray(0, plane))));
  });

  test('a torn last line is ignored; a damaged line elsewhere, or a missing header, is an error naming the line', () => {
    const file = join(dir, 'torn.jsonl');
    writeFileSync(file, `${header(2)}\n{"row": 1, "score_0": 2, "score_1": 1, "label_0": 1}\n{"row": 2, "sco`);
    const c = readChoiceLabels(file);
    assert.deepEqual([...c.labels], [[1, 1]]);
    writeFileSync(file, `${header(2)}\n{"row": 1, "sco\n{"row": 2, "score_0": 2, "score_1": 1, "label_0": 1}\n`);
    assert.throws(() => readChoiceLabels(file), /torn\.jsonl:2: not a JSON line/);
    writeFileSync(file, '{"row": 1}\n');
    assert.throws(() => readChoiceLabels(file), /not a choice-labels file/);
  });
});

describe('relabel and train with AI feedback', () => {
  const scorer = ['--scorer', 'pickscore', '--model', join(fixturesDir, 'tiny-clip'), '--processor', join(fixturesDir, 'tokenizer')];
  const labels = () => join(dir, 'pickscore.jsonl');
  const trainFlags = (out: string, extra: string[]) => ['--pretrained_model_name_or_path', model, '--dataset_name', data, '--output_dir', out,
    '--resolution', '16', '--train_batch_size', '2', '--max_train_steps', '2', '--learning_rate', '1e-3', '--lr_scheduler', 'constant',
    '--lr_warmup_steps', '0', '--mixed_precision', 'no', '--seed', '2', '--checkpointing_steps', '2', ...extra];

  test('relabel scores every pair, the labels follow the scores, and a stopped run resumes', async () => {
    let r = await runCli(['relabel', ...scorer, '--dataset_name', data, '--output', labels(), '--batch_size', '3']);
    assert.equal(r.code, 0, r.err);
    const summary = JSON.parse(r.out) as { pairs: number; scored_now: number; flipped: number };
    assert.deepEqual([summary.pairs, summary.scored_now], [8, 8]);
    const lines = readFileSync(labels(), 'utf8').trim().split('\n').slice(1).map((l) => JSON.parse(l) as { row: number; score_0: number; score_1: number; label_0: number });
    assert.equal(lines.length, 8);
    for (const l of lines) assert.equal(l.label_0, l.score_0 > l.score_1 ? 1 : l.score_0 < l.score_1 ? 0 : 0.5);
    // stopped after the header, two pairs and half a line: the rerun scores the rest only
    const text = readFileSync(labels(), 'utf8');
    const cut = text.split('\n').slice(0, 3).join('\n').length + 1 + 10;
    truncateSync(labels(), cut);
    r = await runCli(['relabel', ...scorer, '--dataset_name', data, '--output', labels()]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual((({ scored_now, scored_before }) => [scored_now, scored_before])(JSON.parse(r.out) as { scored_now: number; scored_before: number }), [6, 2]);
    assert.equal(readChoiceLabels(labels()).labels.size, 8);
    r = await runCli(['relabel', '--scorer', 'hpsv2', '--model', join(fixturesDir, 'tiny-clip'), '--dataset_name', data, '--output', labels()]);
    assert.notEqual(r.code, 0);
  });

  test('train --choice_labels trains on them; --choice_model scores into the output folder first; an incomplete sidecar and other labels on resume are refused', async () => {
    const a = join(dir, 'with-labels');
    let r = await runTrain(trainFlags(a, ['--choice_labels', labels()]));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /AI feedback: labels of pickscore: .*tiny-clip/);
    assert.equal(metricsRows(a).length, 2);
    r = await runTrain(trainFlags(a, ['--max_train_steps', '3']));
    assert.equal(r.code, 1);
    assert.match(r.err, /dataset choice_labels: ".*pickscore\.jsonl" -> null/);

    const b = join(dir, 'with-model');
    r = await runTrain(trainFlags(b, ['--choice_model', 'pickscore', '--choice_model_path', join(fixturesDir, 'tiny-clip'), '--choice_processor', join(fixturesDir, 'tokenizer')]));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /AI feedback: 8 pairs scored now; the scorer flips \d+ of the human choices and ties \d+/);
    assert.deepEqual([...readChoiceLabels(join(b, 'choice_labels.pickscore.jsonl')).labels], [...readChoiceLabels(labels()).labels]);

    const partial = join(dir, 'partial.jsonl');
    writeFileSync(partial, readFileSync(labels(), 'utf8').split('\n').slice(0, 4).join('\n') + '\n');
    r = await runTrain(trainFlags(join(dir, 'partial'), ['--choice_labels', partial]));
    assert.equal(r.code, 1);
    assert.match(r.err, /5 of the run's 8 pairs have no label .*relabelling is incomplete/);
  });

  test('end to end: relabel -> LoRA-DPO on the labels -> eval of the LoRA against the base with PickScore', async () => {
    const out = join(dir, 'e2e');
    let r = await runTrain(trainFlags(out, ['--choice_labels', labels(), '--lora_rank', '4', '--max_train_steps', '3']));
    assert.equal(r.code, 0, r.err);
    const evalDir = join(dir, 'e2e-eval');
    r = await runCli(['eval', '--pretrained_model_name_or_path', model, '--lora', out, '--label', 'dpo-lora', '--prompt', 'a warm picture', '--prompt', 'a cold picture',
      '--seeds', '2', '--num_inference_steps', '2', '--height', '16', '--width', '16', '--scorers', 'pickscore',
      '--scorer_model', `pickscore=${join(fixturesDir, 'tiny-clip')}`, '--scorer_processor', `pickscore=${join(fixturesDir, 'tokenizer')}`,
      '--bootstrap_resamples', '200', '--output_dir', evalDir]);
    assert.equal(r.code, 0, r.err);
    const report = JSON.parse(readFileSync(join(evalDir, 'eval.json'), 'utf8')) as { results: Record<string, Record<string, { mean: number; win_rate?: { rate: number; low: number; high: number; wins: number; ties: number; losses: number; pairs: number } }>> };
    const pick = report.results.pickscore!;
    assert.ok(Number.isFinite(pick.base!.mean) && Number.isFinite(pick['dpo-lora']!.mean), JSON.stringify(pick));
    const w = pick['dpo-lora']!.win_rate!;
    // 2 prompts x 2 seeds, each image of the LoRA against the base's of the same prompt and seed
    assert.equal(w.pairs, 4);
    assert.equal(w.wins + w.ties + w.losses, 4);
    assert.ok(Math.abs(w.rate - (w.wins + w.ties / 2) / 4) < 1e-12);
    assert.ok(w.low <= w.rate && w.rate <= w.high && w.low >= 0 && w.high <= 1, JSON.stringify(w));
  });
});

