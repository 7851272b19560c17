export { Optimizer, type ParamGroup, type OptimizerStateDict } from './optimizer.js';
export { AdamW, type AdamWOptions } from './adamw.js';
export { Adafactor, type AdafactorOptions } from './adafactor.js';
export { clipGradNorm_ } from './clip.js';
export { LRScheduler, getScheduler, scheduleLambda, SCHEDULE_NAMES, type ScheduleName, type ScheduleOptions } from './lr_scheduler.js';
