// Checking a dataset before a long run: every kept row is read and every image it would train on
// is decoded (both of a DPO pair, the preferred one for SFT); captions and labels are validated as
// the loader does. Rows are checked `concurrency` at a time (decoding runs on libuv's threads), so
// memory stays bounded however large the dataset is. The result lists every unusable row by id,
// with the rows the dataset's own scan already found unusable (bad labels, missing columns).
import type { PreferenceDataset } from './dataset.js';
import { decodeRGB } from './decode.js';
import type { BadReason, BadRow, PairRow } from './record.js';

export interface VerifyResult {
  rowsChecked: number;
  imagesDecoded: number;
  bad: Partial<Record<BadReason, number>>;
  /** Every unusable row, ascending by id. */
  badRows: BadRow[];
}

export interface VerifyOptions {
  /** Rows in flight at once (default 8). */
  concurrency?: number;
  onProgress?: (done: number, total: number, bad: number) => void;
}

async function checkRow(ds: PreferenceDataset, row: number): Promise<{ bad: BadRow | null; decoded: number }> {
  let r: PairRow;
  try {
    [r] = (await ds.source.read([row])) as [PairRow];
  } catch (e) {
    return { bad: { row, reason: 'unreadable_row', detail: (e as Error).message.split('\n')[0] }, decoded: 0 };
  }
  if (r.caption === null || (Array.isArray(r.caption) && r.caption.length === 0)) return { bad: { row, reason: 'null_caption' }, decoded: 0 };
  if (r.label0 !== 0 && r.label0 !== 1) return { bad: { row, reason: 'bad_label', detail: `label_0 = ${String(r.label0)}` }, decoded: 0 };
  const preferredFirst = r.label0 !== 0;
  const images = !ds.source.pairs ? [r.image0] : ds.method === 'sft' ? [preferredFirst ? r.image0 : r.image1] : [r.image0, r.image1];
  let decoded = 0;
  for (const img of images) {
    if (!(img instanceof Uint8Array)) return { bad: { row, reason: 'missing_image', detail: img.missing }, decoded };
    try {
      await decodeRGB(img);
      decoded++;
    } catch (e) {
      return { bad: { row, reason: 'undecodable_image', detail: (e as Error).message }, decoded };
    }
  }
  return { bad: null, decoded };
}

export async function verifyDataset(ds: PreferenceDataset, o: VerifyOptions = {}): Promise<VerifyResult> {
  const rows = ds.indices;
  const concurrency = Math.max(1, o.concurrency ?? 8);
  const badRows: BadRow[] = [...ds.stats.badRows];
  let imagesDecoded = 0;
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < rows.length) {
      const row = rows[next++]!;
      const r = await checkRow(ds, row);
      imagesDecoded += r.decoded;
      if (r.bad) badRows.push(r.bad);
      o.onProgress?.(++done, rows.length, badRows.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, rows.length) }, worker));
  badRows.sort((a, b) => a.row - b.row);
  const bad: Partial<Record<BadReason, number>> = {};
  for (const b of badRows) bad[b.reason] = (bad[b.reason] ?? 0) + 1;
  return { rowsChecked: rows.length, imagesDecoded, bad, badRows };
}
