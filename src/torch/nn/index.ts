export { Module, StateDictError, type StateDict, type LoadResult } from './module.js';
export * from './layers.js';
export * as init from './init.js';
export { LoraAdapter, LoraAdapters, matchesTarget, type AdaptableLayer, type InjectOptions, type LoraSettings } from './lora.js';
