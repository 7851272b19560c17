// Config parsing shared by the models: read a diffusers/transformers config.json object, fill in
// the reference library's defaults, and refuse values this implementation does not support with
// an error naming the option (never a silent fallback).
import { UserError } from '../util/errors.js';

export class ConfigError extends UserError {
  constructor(readonly model: string, message: string) {
    super(`${model} config: ${message}`);
    this.name = 'ConfigError';
  }
}

export type RawConfig = Record<string, unknown>;

/** raw[key] if present and not null, else the default. */
export function get<T>(raw: RawConfig, key: string, fallback: T): T {
  const v = raw[key];
  return v === undefined || v === null ? fallback : (v as T);
}

/** A per-block value that may be given once for all blocks (a number) or per block (a list). */
export function perBlock<T>(model: string, key: string, value: T | T[], n: number): T[] {
  if (Array.isArray(value)) {
    if (value.length !== n) throw new ConfigError(model, `\`${key}\` has ${value.length} entries but there are ${n} blocks`);
    return value;
  }
  return Array.from({ length: n }, () => value);
}

/** Refuses a config value that changes behaviour we do not implement. */
export function requireValue(model: string, raw: RawConfig, key: string, allowed: unknown[], what = 'supported'): void {
  const v = raw[key];
  if (v === undefined) return;
  if (!allowed.some((a) => JSON.stringify(a) === JSON.stringify(v))) {
    throw new ConfigError(model, `\`${key}\` = ${JSON.stringify(v)} is not ${what} (supported: ${allowed.map((a) => JSON.stringify(a)).join(', ')})`);
  }
}
