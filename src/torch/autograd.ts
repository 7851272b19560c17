// Autograd entry points and scoped modes. Each mode is a closure that restores the previous state
// in `finally`, plus a Disposable guard for code that cannot be a closure (`using g = noGradGuard()`).
// Modes are thread-local in libtorch; all ops run on the JS thread, which is what makes this sound.
import { type DType, dtypeCode } from './dtype.js';
import { deviceType, type Device } from './device.js';
import { checkGrad, runBackward, type BackwardOptions } from './backward_hooks.js';
import { native } from './native.js';
import { Tensor, wrap } from './tensor.js';

function sync<T>(name: string, result: T): T {
  if (result instanceof Promise) throw new Error(`${name}() got an async function: modes are synchronous`);
  return result;
}

export function isGradEnabled(): boolean {
  return native.setGradEnabled(undefined);
}

/** Sets grad mode and returns a guard restoring the previous one. */
export function gradModeGuard(enabled: boolean): Disposable {
  const prev = native.setGradEnabled(enabled);
  return { [Symbol.dispose]: () => void native.setGradEnabled(prev) };
}
export function noGradGuard(): Disposable {
  return gradModeGuard(false);
}

/** Runs fn without recording autograd history (torch.no_grad). */
export function noGrad<T>(fn: () => T): T {
  const prev = native.setGradEnabled(false);
  try {
    return sync('noGrad', fn());
  } finally {
    native.setGradEnabled(prev);
  }
}

/** Runs fn with autograd on, even inside noGrad (torch.enable_grad). */
export function enableGrad<T>(fn: () => T): T {
  const prev = native.setGradEnabled(true);
  try {
    return sync('enableGrad', fn());
  } finally {
    native.setGradEnabled(prev);
  }
}

/** torch.inference_mode: like noGrad, and tensors made inside can never enter autograd. */
export function inferenceMode<T>(fn: () => T, enabled = true): T {
  const depth = native.inferenceModeEnter(enabled);
  try {
    return sync('inferenceMode', fn());
  } finally {
    native.inferenceModeExit(depth);
  }
}
export function isInferenceMode(): boolean {
  return native.isInferenceMode();
}

export interface AutocastOptions {
  device: Device;
  /** Defaults: bfloat16 on CPU, float16 on CUDA (as torch.autocast). */
  dtype?: DType;
  enabled?: boolean;
}

const AUTOCAST_DTYPES: Record<string, DType[]> = { cpu: ['bfloat16', 'float16'], cuda: ['float16', 'bfloat16'] };

export function autocastGuard(o: AutocastOptions): Disposable {
  const type = deviceType(o.device);
  const allowed = AUTOCAST_DTYPES[type];
  if (!allowed) throw new TypeError(`autocast is not supported on '${o.device}'`);
  const dtype = o.dtype ?? allowed[0]!;
  if (!allowed.includes(dtype)) throw new TypeError(`autocast on ${type} supports ${allowed.join(' and ')}, not ${dtype}`);
  const [prevEnabled, prevDtype] = native.autocastEnter(type, dtypeCode(dtype), o.enabled ?? true);
  let done = false;
  return {
    [Symbol.dispose]: () => {
      if (done) return;
      done = true;
      native.autocastExit(type, prevEnabled, prevDtype);
    },
  };
}

/**
 * torch.autocast: inside fn, eligible ops (matmul, conv, linear, ...) run in `dtype` and
 * precision-sensitive ones in float32. The cast cache is cleared when the outermost region ends.
 */
export function autocast<T>(o: AutocastOptions, fn: () => T): T {
  const guard = autocastGuard(o);
  try {
    return sync('autocast', fn());
  } finally {
    guard[Symbol.dispose]();
  }
}

export function isAutocastEnabled(device: Device = 'cuda'): boolean {
  return native.autocastState(deviceType(device))[0];
}

/** torch.autograd.backward over several roots at once. */
export function backward(tensors: Tensor[], grads?: (Tensor | null)[], o: BackwardOptions = {}): void {
  runBackward(() => native.backward(tensors.map((t) => t._h), grads ? grads.map((g) => (g ? g._h : null)) : null, o.retainGraph, o.createGraph), o);
}

/** torch.autograd.grad: gradients of outputs with respect to inputs, returned rather than accumulated. */
export function grad(outputs: Tensor[], inputs: Tensor[], o: { gradOutputs?: (Tensor | null)[]; retainGraph?: boolean; createGraph?: boolean; allowUnused?: boolean } = {}): (Tensor | null)[] {
  checkGrad();
  const hs = native.autogradGrad(outputs.map((t) => t._h), inputs.map((t) => t._h),
    o.gradOutputs ? o.gradOutputs.map((g) => (g ? g._h : null)) : null, o.retainGraph, o.createGraph, o.allowUnused);
  return hs.map((hh) => (hh === null ? null : wrap(hh)));
}
