// Built-in prompt sets. NOTEBOOK_PROMPTS are the 16 example prompts of the reference's
// quick_samples.ipynb (the base-vs-DPO comparison notebook).
import { readFileSync } from 'node:fs';

export const NOTEBOOK_PROMPTS: readonly string[] = [
  'A pile of sand swirling in the wind forming the shape of a dancer',
  'A giant dinosaur frozen into a glacier and recently discovered by scientists, cinematic still',
  'a smiling beautiful sorceress with long dark hair and closed eyes wearing a dark top surrounded by glowing fire sparks at night, magical light fog, deep focus+closeup, hyper-realistic, volumetric lighting, dramatic lighting, beautiful composition, intricate details, instagram, trending, photograph, film grain and noise, 8K, cinematic, post-production',
  'A purple raven flying over big sur, light fog, deep focus+closeup, hyper-realistic, volumetric lighting, dramatic lighting, beautiful composition, intricate details, instagram, trending, photograph, film grain and noise, 8K, cinematic, post-production',
  'a smiling beautiful sorceress wearing a modest high necked blue suit surrounded by swirling rainbow aurora, hyper-realistic, cinematic, post-production',
  'Anthro humanoid turtle skydiving wearing goggles, gopro footage',
  'A man in a suit surfing in a river',
  'photo of a zebra dressed suit and tie sitting at a table in a bar with a bar stools, award winning photography',
  'A typhoon in a tea cup, digital render',
  'A cute puppy leading a session of the United Nations, newspaper photography',
  'Worm eye view of rocketship',
  'Glass spheres in the desert, refraction render',
  'anthropmorphic coffee bean drinking coffee',
  'A baby kangaroo in a trenchcoat',
  'A towering hurricane of rainbow colors towering over a city, cinematic digital art',
  'A redwood tree rising up out of the ocean',
];

/** Prompts from a file: one per line (.txt), or JSON lines with a "prompt" (or "caption") field. */
export function readPromptFile(path: string): string[] {
  const text = readFileSync(path, 'utf8');
  if (path.endsWith('.jsonl')) {
    // number rows by their line in the file, blank lines included
    return text.split('\n').map((l, i) => [l, i] as const).filter(([l]) => l.trim()).map(([l, i]) => {
      let o: { prompt?: unknown; caption?: unknown };
      try {
        o = JSON.parse(l) as typeof o;
      } catch {
        throw new Error(`${path}:${i + 1}: not valid JSON`);
      }
      const p = o.prompt ?? o.caption;
      if (typeof p !== 'string') throw new Error(`${path}:${i + 1}: no "prompt" string`);
      return p;
    });
  }
  return text.split('\n').map((l) => l.trim()).filter(Boolean);
}
