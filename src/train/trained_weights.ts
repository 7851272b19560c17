// What a run trains, as checkpoints and the final output see it: the whole UNet, or LoRA adapters
// on a frozen UNet. A UNet checkpoint is a diffusers UNet folder (loadable as is); a LoRA one holds
// the adapters' raw weights (α not folded, so a resumed run continues bit-identically) and their
// settings; the run's result is pytorch_lora_weights.safetensors in diffusers' layout.
import { join } from 'node:path';
import * as torch from '../torch/index.js';
import { componentConfigJson, componentWeightsName, diffusersLoraStateDict, LORA_WEIGHTS_NAME, type UNet2DConditionModel } from '../models/index.js';
import type { TrainedWeights } from './checkpoint.js';

const UNET_CLASS = 'UNet2DConditionModel';

export function trainedUNet(unet: UNet2DConditionModel): TrainedWeights {
  return {
    kind: 'unet',
    params: unet.parameters(),
    namedTensors: () => [...unet.stateDict()],
    weightsFile: join('unet', componentWeightsName()),
    texts: () => [[join('unet', 'config.json'), componentConfigJson(unet, UNET_CLASS)]],
    load: (tensors, what) => void unet.loadStateDict(tensors, { what }),
  };
}

/** The settings a LoRA checkpoint records beside its adapters. */
export interface LoraRecord {
  base_model: string;
  /** Each adapter's layer, rank and α (loaded files may mix ranks). */
  layers: { path: string; rank: number; alpha: number }[];
  dropout: number;
}

export function trainedLora(adapters: torch.nn.LoraAdapters, record: Omit<LoraRecord, 'layers'>): TrainedWeights {
  return {
    kind: 'lora',
    params: adapters.parameters(),
    namedTensors: () => adapters.namedParameters(),
    weightsFile: 'lora_adapters.safetensors',
    texts: () => [['lora_adapters.json', JSON.stringify(loraRecord(adapters, record), null, 2)]],
    load: (tensors, what) => adapters.loadStateDict(tensors, what),
  };
}

function loraRecord(adapters: torch.nn.LoraAdapters, record: Omit<LoraRecord, 'layers'>): LoraRecord {
  return { ...record, layers: [...adapters.entries()].map(([path, a]) => ({ path, rank: a.settings.rank, alpha: a.settings.alpha })) };
}

/**
 * Writes <dir>/pytorch_lora_weights.safetensors: the UNet adapters in diffusers' layout (α folded
 * in), with the run's settings in the file's metadata under "diffusion_dpo".
 */
export function saveLoraWeights(dir: string, unet: UNet2DConditionModel, adapters: torch.nn.LoraAdapters, about: Record<string, unknown>): string {
  const file = join(dir, LORA_WEIGHTS_NAME);
  torch.tidy(() => {
    torch.saveSafetensors(file, diffusersLoraStateDict(unet, adapters), { format: 'pt', diffusion_dpo: JSON.stringify(about) });
  });
  return file;
}
