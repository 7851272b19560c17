// Case kinds this build can run. Kinds not listed here are reported UNSUPPORTED (a failure).
import type { FixtureCase } from '../case.js';
import type { Comparison } from '../compare.js';
import { runLrScheduleCase } from './lr_schedule.js';
import { runOptimizerCase } from './optimizer.js';

export type Runner = (c: FixtureCase) => Comparison[];

export const RUNNERS: Record<string, Runner> = {
  optimizer: runOptimizerCase,
  lr_schedule: runLrScheduleCase,
};
