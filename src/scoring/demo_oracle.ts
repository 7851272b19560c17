// The demo's preference as a scorer: warmth, the mean over the image of (red − blue) / 255, in
// [−1, 1]. The demo's preference data prefers the warmer image of each pair (src/demo/preference_data.ts), so
// this is the rule its labels follow, and `eval --scorers demo_oracle` measures whether training
// moved the model towards it. It reads pixels only (not the prompt) and loads no model.
import type { RawImage } from '../data/pil_resize.js';
import type { ScoreInput, Scorer } from './types.js';

export function warmth(img: RawImage): number {
  const ch = img.channels;
  let sum = 0;
  for (let i = 0; i < img.data.length; i += ch) sum += img.data[i]! - img.data[i + 2]!;
  return sum / (255 * (img.data.length / ch));
}

export class DemoOracleScorer implements Scorer {
  readonly name = 'demo_oracle' as const;
  readonly description = 'demo_oracle: warmth, mean (red - blue) / 255 (the demo\'s preference rule)';
  async score(inputs: readonly ScoreInput[]): Promise<number[]> {
    return inputs.map((i) => warmth(i.image));
  }
  dispose(): void {}
}
