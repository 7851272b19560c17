// What every reward model offers the commands that judge images (score, relabel, eval, AI
// feedback in training): a score per (image, prompt), higher meaning better, as the reference's
// scorers compute it (../shared/reference-system.md "Scorers").
import type { RawImage } from '../data/pil_resize.js';
import type * as torch from '../torch/index.js';
import { UserError } from '../util/errors.js';

export const SCORER_NAMES = ['pickscore', 'hpsv2', 'hpsv2.1', 'clip', 'aesthetics', 'demo_oracle'] as const;
export type ScorerName = (typeof SCORER_NAMES)[number];

export interface ScoreInput {
  /** Decoded 8-bit RGB, or RGBA (src/data/decode.ts decodeForScoring: open_clip resizes with the alpha, as PIL does). */
  image: RawImage;
  /** The prompt the image was made for (the aesthetics scorer ignores it). */
  prompt: string;
}

export interface Scorer {
  readonly name: ScorerName;
  /** What was loaded, for reports: the model id or path and the processor's. */
  readonly description: string;
  /** One score per input, in order; batched internally. */
  score(inputs: readonly ScoreInput[]): Promise<number[]>;
  dispose(): void;
}

export interface ScorerOptions {
  /** A Hub id, a local folder or a file; default: the id the reference uses for this scorer. */
  model?: string;
  /** Where the tokenizer and image-processor files come from, when not beside the model. */
  processor?: string;
  device?: torch.Device;
  /** Images per forward pass (default 16). */
  batchSize?: number;
  cacheDir?: string;
}

export function checkScorerName(name: string): ScorerName {
  if (!(SCORER_NAMES as readonly string[]).includes(name)) throw new UserError(`unknown scorer '${name}' (scorers: ${SCORER_NAMES.join(', ')})`);
  return name as ScorerName;
}
