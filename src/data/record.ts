// What every data source yields: one preference row (or, for SFT, one image with its caption).

export interface RowMeta {
  caption: string | string[] | null;
  label0: number | null;
  label1: number | null;
  model0?: string | null;
  model1?: string | null;
}

/** Image bytes, or a reason the row cannot be used. */
export type ImageBytes = Uint8Array | { missing: string };

export interface PairRow extends RowMeta {
  image0: ImageBytes;
  image1: ImageBytes;
}

/** A random-access source of rows: metadata for filtering, then rows by index. */
export interface PairSource {
  readonly description: string;
  /**
   * false for single captioned images (SFT data): each row's image is image0 with label_0 = 1,
   * as the preferred image of a pair would be.
   */
  readonly pairs: boolean;
  /**
   * Single-image sources whose rows carry a per-image label (label_0: 1 desirable, 0 undesirable),
   * the unpaired data of Diffusion-KTO; without one every single image counts as desirable.
   */
  readonly imageLabels?: boolean;
  /** Number of raw rows. */
  readonly size: number;
  /** The small fields of every row (labels, models), without reading images. */
  scanMeta(): Promise<RowMeta[]>;
  /** Full rows by raw index (in the order given). */
  read(indices: number[]): Promise<PairRow[]>;
}

export const BAD_REASONS = ['tie', 'not_dreamlike', 'undesirable', 'bad_label', 'null_caption', 'missing_image', 'undecodable_image', 'missing_column', 'unreadable_row'] as const;
export type BadReason = (typeof BAD_REASONS)[number];

/** A row that cannot be used: its raw index in the source, why, and what was found. */
export interface BadRow {
  row: number;
  reason: BadReason;
  detail?: string;
}
