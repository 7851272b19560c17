// The LAION aesthetic predictor head (the reference's utils/aes_utils.py MLP(768)): Linear 768->1024,
// Dropout, Linear 1024->128, Dropout, Linear 128->64, Dropout, Linear 64->16, Linear 16->1, with no
// activations; the Dropouts are identity at inference, and keep their places in the key names
// (layers.0, 2, 4, 6, 7).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as torch from '../torch/index.js';

const { nn } = torch;

/** The head that ships with the project (assets/aesthetics/README.md says where it comes from). */
export function bundledAestheticsHead(): string {
  // dist/src/scoring -> project root, or src/scoring when run from sources
  for (const up of ['../../..', '../..']) {
    const p = join(dirname(fileURLToPath(import.meta.url)), up, 'assets', 'aesthetics', 'sac+logos+ava1-l14-linearMSE.safetensors');
    if (existsSync(p)) return p;
  }
  throw new Error('the bundled aesthetics head (assets/aesthetics/sac+logos+ava1-l14-linearMSE.safetensors) is missing from this installation');
}

export class AestheticsHead extends nn.Module {
  readonly layers: torch.nn.Sequential;
  constructor(inputSize = 768, f: torch.nn.FactoryOptions = {}) {
    super();
    this.layers = this.registerModule('layers', new nn.Sequential(
      new nn.Linear(inputSize, 1024, f), new nn.Dropout(0.2), new nn.Linear(1024, 128, f), new nn.Dropout(0.2),
      new nn.Linear(128, 64, f), new nn.Dropout(0.1), new nn.Linear(64, 16, f), new nn.Linear(16, 1, f),
    ));
    this.eval();
  }
  /** L2-normalised embeddings (B, 768) -> scores (B, 1). */
  forward(embeddings: torch.Tensor): torch.Tensor {
    return this.layers.forward(embeddings);
  }

  static load(file = bundledAestheticsHead(), o: { device?: torch.Device } = {}): AestheticsHead {
    const head = new AestheticsHead(768, { device: 'meta' });
    torch.tidy(() => head.loadStateDict(torch.loadSafetensors(file), { assign: true, device: o.device ?? 'cpu', dtype: 'float32', what: file }));
    return head.eval();
  }
}
