// Case kinds this build can run. Kinds not listed here are reported UNSUPPORTED (a failure).
import type { FixtureCase } from '../case.js';
import type { Comparison } from '../compare.js';
import { runImagePreprocessCase } from './image.js';
import { runLrScheduleCase } from './lr_schedule.js';
import { runTextEncoderCase, runTextEncoderSDXLCase, runUNetCase, runVAECase } from './models.js';
import { runAddNoiseCase } from './noise_schedule.js';
import { runOptimizerCase } from './optimizer.js';
import { runPipelineCase } from './pipeline.js';
import { runSchedulerCase } from './scheduler.js';
import { runAestheticsCase, runClipScoreCase } from './scoring.js';
import { runTrainStepCase } from './train_step.js';

export type Runner = (c: FixtureCase) => Comparison[] | Promise<Comparison[]>;

export const RUNNERS: Record<string, Runner> = {
  optimizer: runOptimizerCase,
  lr_schedule: runLrScheduleCase,
  unet_forward_backward: runUNetCase,
  vae: runVAECase,
  text_encoder: runTextEncoderCase,
  text_encoder_sdxl: runTextEncoderSDXLCase,
  image_preprocess: runImagePreprocessCase,
  dpo_step: runTrainStepCase,
  sft_step: runTrainStepCase,
  scheduler_add_noise: runAddNoiseCase,
  scheduler_rollout: runSchedulerCase,
  pipeline_sample: runPipelineCase,
  clip_score: runClipScoreCase,
  aesthetics: runAestheticsCase,
};
