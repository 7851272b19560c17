// Evaluation protocols: named sampling settings that published numbers were measured with, so a
// result says which it followed and can be reproduced. A flag given on the command line overrides
// the protocol's value, and the report records that it did.
import type { SchedulerName } from '../schedulers/samplers.js';

export interface Protocol {
  description: string;
  /** denoising steps */
  steps: number;
  /** null: the pipeline family's default (7.5 for SD, 5.0 for SDXL, as the reference notebook) */
  guidanceScale: number | null;
  /** null: the pipeline's own scheduler (its scheduler_config.json) */
  scheduler: SchedulerName | null;
  /** seeds per prompt */
  seeds: number;
}

export const PROTOCOLS = {
  paper: {
    description: 'the Diffusion-DPO reference notebook: the pipeline\'s default scheduler, 50 steps, guidance 7.5 (SD) or 5.0 (SDXL), one seed per prompt',
    steps: 50, guidanceScale: null, scheduler: null, seeds: 1,
  },
  spo: {
    description: 'SPO\'s evaluation settings: DDIM, 20 steps, guidance 5, one seed per prompt',
    steps: 20, guidanceScale: 5, scheduler: 'ddim', seeds: 1,
  },
} as const satisfies Record<string, Protocol>;

export type ProtocolName = keyof typeof PROTOCOLS;
export const PROTOCOL_NAMES = Object.keys(PROTOCOLS) as ProtocolName[];

/** What the command line gave (null: not given). */
export interface ProtocolFlags {
  num_inference_steps: number | null;
  guidance_scale: number | null;
  scheduler: string | null;
  seeds: number | null;
}

export interface ResolvedProtocol {
  name: ProtocolName;
  description: string;
  /** The protocol's own values, as it defines them ('pipeline default' where it defers to the pipeline). */
  preset: { num_inference_steps: number; guidance_scale: number | string; scheduler: string; seeds: number };
  /** The flags that replaced a protocol value, with both values. */
  overridden: Record<string, { protocol: number | string; used: number | string }>;
  steps: number;
  guidanceScale: number | null;
  scheduler: string | null;
  seeds: number;
}

export function resolveProtocol(name: ProtocolName, flags: ProtocolFlags): ResolvedProtocol {
  const p: Protocol = PROTOCOLS[name];
  const preset = {
    num_inference_steps: p.steps,
    guidance_scale: p.guidanceScale ?? '7.5 (SD) or 5.0 (SDXL)',
    scheduler: p.scheduler ?? 'the pipeline\'s default',
    seeds: p.seeds,
  };
  const overridden: ResolvedProtocol['overridden'] = {};
  for (const key of ['num_inference_steps', 'guidance_scale', 'scheduler', 'seeds'] as const) {
    const given = flags[key];
    if (given !== null && given !== preset[key]) overridden[key] = { protocol: preset[key], used: given };
  }
  return {
    name, description: p.description, preset, overridden,
    steps: flags.num_inference_steps ?? p.steps,
    guidanceScale: flags.guidance_scale ?? p.guidanceScale,
    scheduler: flags.scheduler ?? p.scheduler,
    seeds: flags.seeds ?? p.seeds,
  };
}
