// SDXL's text conditioning, one function for training (train.py's encode_prompt_sdxl) and sampling
// (StableDiffusionXLPipeline.encode_prompt without LoRA/clip-skip): the penultimate hidden states
// of each encoder side by side, and the pooled, projected text_embeds of the last encoder. The
// refiner has only the second encoder.
import * as torch from '../torch/index.js';
import type { CLIPTokenizer } from '../tokenizers/clip.js';
import type { CLIPTextModel, CLIPTextModelWithProjection } from './clip_text.js';
import { UserError } from '../util/errors.js';

export interface SdxlTextEncoders {
  textEncoder: CLIPTextModel | null;
  tokenizer: CLIPTokenizer | null;
  textEncoder2: CLIPTextModelWithProjection | null;
  tokenizer2: CLIPTokenizer | null;
}

export function encodeSdxlPrompt(e: SdxlTextEncoders, texts: string[]): { promptEmbeds: torch.Tensor; pooled: torch.Tensor } {
  if (!e.textEncoder2 || !e.tokenizer2) throw new UserError('SDXL needs text_encoder_2 and tokenizer_2');
  const ids = (tok: CLIPTokenizer, enc: torch.nn.Module) =>
    torch.tensor(tok.encodeBatch(texts).map((x) => x.inputIds), { dtype: 'int64', device: enc.parameters()[0]!.device });
  return torch.tidy(() => torch.noGrad(() => {
    const embeds: torch.Tensor[] = [];
    if (e.textEncoder && e.tokenizer) embeds.push(e.textEncoder.forward(ids(e.tokenizer, e.textEncoder)).hiddenStates.at(-2)!);
    const out = e.textEncoder2!.forward(ids(e.tokenizer2!, e.textEncoder2!));
    embeds.push(out.hiddenStates.at(-2)!);
    return { promptEmbeds: torch.cat(embeds, -1), pooled: out.textEmbeds };
  }));
}
