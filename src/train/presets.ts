// --preset: the published recipes, as flag values. A preset fills in the flags the user did not
// give (explicit flags, on the command line or in --config, always win), and its effective batch
// is reached through gradient accumulation for the processes at hand, as the paper's launch
// scripts ask ("scale gradient accumulation accordingly"). Every value it sets is printed.
import type { FlagName, ParsedTrainArgs } from './args.js';

type FlagValue = string | number | boolean;

export interface Preset {
  /** Where the recipe is published. */
  source: string;
  /** The recipe's batch per device and effective batch (per device × accumulation × processes). */
  perDevice: number;
  effectiveBatch: number;
  /** Flag name (as in args.ts) -> value; every name is checked against the flag table by the tests. */
  values: Record<string, FlagValue>;
  /** What of the recipe this build does differently, said when the preset is used. */
  differences?: string;
}

const PAPER = 'Diffusion-DPO (Wallace et al. 2023), SalesforceAIResearch/DiffusionDPO launchers/';
const DIFFUSERS_LORA = 'diffusers examples/research_projects/diffusion_dpo/README.md';
const SDXL_VAE = 'madebyollin/sdxl-vae-fp16-fix';

export const PRESETS = {
  'sd15-paper': {
    source: `${PAPER}sd15.sh`, perDevice: 1, effectiveBatch: 2048,
    values: {
      learning_rate: 1e-8, scale_lr: true, lr_scheduler: 'constant_with_warmup', lr_warmup_steps: 500, max_train_steps: 2000,
      beta_dpo: 5000, checkpointing_steps: 500, mixed_precision: 'fp16', dataloader_num_workers: 16,
    },
  },
  'sdxl-paper': {
    source: `${PAPER}sdxl.sh`, perDevice: 1, effectiveBatch: 2048,
    values: {
      sdxl: true, pretrained_vae_model_name_or_path: SDXL_VAE, learning_rate: 1e-8, scale_lr: true, lr_scheduler: 'constant_with_warmup',
      lr_warmup_steps: 200, max_train_steps: 2000, beta_dpo: 5000, checkpointing_steps: 200, mixed_precision: 'fp16', dataloader_num_workers: 16,
    },
  },
  'sd15-lora': {
    source: `${DIFFUSERS_LORA} (train_diffusion_dpo.py)`, perDevice: 16, effectiveBatch: 32,
    values: {
      lora_rank: 8, learning_rate: 1e-5, lr_scheduler: 'constant', lr_warmup_steps: 0, max_train_steps: 10000, checkpointing_steps: 2000,
      gradient_checkpointing: true, beta_dpo: 2500, mixed_precision: 'fp16', resolution: 512,
    },
    differences: 'AdamW in float32 instead of bitsandbytes\' 8-bit AdamW; adapters initialised as peft does by default (Kaiming-uniform), not "gaussian"',
  },
  'sdxl-lora': {
    source: `${DIFFUSERS_LORA} (train_diffusion_dpo_sdxl.py)`, perDevice: 8, effectiveBatch: 16,
    values: {
      sdxl: true, pretrained_vae_model_name_or_path: SDXL_VAE, lora_rank: 8, learning_rate: 1e-5, lr_scheduler: 'constant', lr_warmup_steps: 0,
      max_train_steps: 2000, checkpointing_steps: 500, gradient_checkpointing: true, beta_dpo: 5000, mixed_precision: 'fp16', resolution: 1024,
    },
    differences: 'AdamW in float32 instead of bitsandbytes\' 8-bit AdamW; adapters initialised as peft does by default (Kaiming-uniform), not "gaussian"',
  },
  'sd15-mapo': {
    source: 'MaPO (Hong et al. 2024), mapo-t2i/mapo README.md (its SDXL command, on SD1.5 at 512 px)', perDevice: 8, effectiveBatch: 16,
    values: {
      loss_type: 'mapo', beta_mapo: 0.1, learning_rate: 1e-5, lr_scheduler: 'constant', lr_warmup_steps: 0, max_train_steps: 2000,
      checkpointing_steps: 500, gradient_checkpointing: true, mixed_precision: 'fp16', resolution: 512,
    },
    differences: 'AdamW in float32 instead of bitsandbytes\' 8-bit AdamW',
  },
} satisfies Record<string, Preset>;

export type PresetName = keyof typeof PRESETS;
export const PRESET_NAMES: string[] = Object.keys(PRESETS);

const show = (v: FlagValue) => (v === true ? '' : ` ${String(v)}`);

/**
 * The arguments with the preset's values filled in where the user gave none (the `given` set is
 * left as the user's: a preset's value is a default, not a choice the checks hold the user to),
 * and the lines that say what it set.
 */
export function applyPreset(args: ParsedTrainArgs, name: PresetName, worldSize: number): { args: ParsedTrainArgs; lines: string[]; set: ReadonlySet<string> } {
  const p: Preset = PRESETS[name];
  const out = { ...args } as Record<string, unknown>;
  const set: string[] = [];
  const setFlags = new Set<string>();
  const kept: string[] = [];
  const fill = (flag: FlagName, value: FlagValue) => {
    if (args.given.has(flag)) {
      kept.push(`--${flag}${show(args[flag] as FlagValue)}`);
      return;
    }
    out[flag] = value;
    setFlags.add(flag);
    set.push(`--${flag}${show(value)}`);
  };
  for (const [flag, value] of Object.entries(p.values)) fill(flag as FlagName, value);
  fill('train_batch_size', p.perDevice);
  const perDevice = out.train_batch_size as number;
  fill('gradient_accumulation_steps', Math.max(1, Math.round(p.effectiveBatch / (perDevice * worldSize))));
  const effective = perDevice * (out.gradient_accumulation_steps as number) * worldSize;
  const lines = [
    `preset ${name} (${p.source}): set ${set.join(' ')}` + (kept.length ? `; your ${kept.join(' ')} kept` : ''),
    `preset ${name}: effective batch ${perDevice} x ${out.gradient_accumulation_steps as number} x ${worldSize} process(es) = ${effective}` +
      (effective === p.effectiveBatch ? ' (the recipe\'s)' : ` (the recipe's is ${p.effectiveBatch})`),
  ];
  if (p.differences) lines.push(`preset ${name}: differs from the recipe in: ${p.differences}`);
  return { args: Object.assign(out, { given: args.given }) as ParsedTrainArgs, lines, set: setFlags };
}
