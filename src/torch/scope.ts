// Deterministic memory: scopes free every tensor created inside them except what they return or
// what is kept (tfjs tidy/keep + TorchSharp's DisposeScope). The GC is only a safety net: on Node
// 20 finalizers are deferred to a later turn of the event loop, so a synchronous training step
// would never free anything through them. One training step = one synchronous tidy().
import { native } from './native.js';

/** What scopes need of a tensor (kept minimal so this file does not import tensor.ts). */
export interface Scoped {
  /** Id of the scope that owns it; 0 = no scope (long-lived, GC safety net only). */
  _scope: number;
  /** Native handle; -1 once disposed. */
  _h: number;
  readonly isDisposed: boolean;
  dispose(): void;
}

interface Scope {
  id: number;
  tensors: Scoped[];
  name: string | undefined;
}

const stack: Scope[] = [];
let nextScopeId = 1;

// Safety net for tensors that live outside every scope: if such a tensor becomes unreachable
// without dispose(), its slot is freed when V8 collects it. A handle that was disposed and
// reused meanwhile carries another generation, so the native side ignores the stale free.
const registry = new FinalizationRegistry<number>((handle) => {
  native.dispose(handle);
});

/** Called for every new tensor: it belongs to the innermost scope, or to none. */
export function adopt(t: Scoped): void {
  const top = stack[stack.length - 1];
  if (top) {
    t._scope = top.id;
    top.tensors.push(t);
  } else {
    t._scope = 0;
    registry.register(t, t._h);
  }
}

/** Exempts a tensor from every scope: it lives until dispose() (or, failing that, GC). */
export function keep<T extends Scoped>(t: T): T {
  if (t._scope !== 0) {
    t._scope = 0;
    registry.register(t, t._h);
  }
  return t;
}

/** Moves a tensor from its scope to the enclosing one (TorchSharp MoveToOuterDisposeScope). */
export function moveToOuterScope<T extends Scoped>(t: T): T {
  const index = stack.findIndex((s) => s.id === t._scope);
  if (index < 0) return t;
  const outer = stack[index - 1];
  if (outer) {
    t._scope = outer.id;
    outer.tensors.push(t);
  } else {
    keep(t);
  }
  return t;
}

function isScoped(v: unknown): v is Scoped {
  return typeof v === 'object' && v !== null && '_scope' in v && '_h' in v;
}

/** Every tensor reachable from a value: tensors, arrays, Maps, Sets and plain objects. */
function collect(value: unknown, out: Set<Scoped>, seen: Set<unknown>): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (isScoped(value)) {
    out.add(value);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collect(v, out, seen);
  } else if (value instanceof Map) {
    for (const [k, v] of value) {
      collect(k, out, seen);
      collect(v, out, seen);
    }
  } else if (value instanceof Set) {
    for (const v of value) collect(v, out, seen);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, out, seen);
  }
}

export function beginScope(name?: string): number {
  const id = nextScopeId++;
  stack.push({ id, tensors: [], name });
  return id;
}

/** Ends the innermost scope (which must be `id`), disposing all it owns except `result`'s tensors. */
export function endScope(id: number, result?: unknown): void {
  const scope = stack[stack.length - 1];
  if (!scope || scope.id !== id) {
    throw new Error(`scopes ended out of order (ending ${id}, innermost is ${scope?.id ?? 'none'})`);
  }
  stack.pop();
  const survivors = new Set<Scoped>();
  if (result !== undefined) collect(result, survivors, new Set());
  const outer = stack[stack.length - 1];
  // Everything else is freed with one native call (a scope often ends a thousand tensors).
  const dead = new Float64Array(scope.tensors.length);
  let n = 0;
  for (const t of scope.tensors) {
    if (t._scope !== id || t._h < 0) continue; // kept, moved out or disposed meanwhile
    if (survivors.has(t)) {
      if (outer) {
        t._scope = outer.id;
        outer.tensors.push(t);
      } else {
        keep(t);
      }
    } else {
      dead[n++] = t._h;
      t._h = -1;
    }
  }
  if (n > 0) native.disposeMany(n === dead.length ? dead : dead.subarray(0, n));
}

/**
 * Runs fn in a scope: every tensor created inside is disposed at the end, except the tensors in
 * fn's return value (found in arrays, Maps and plain objects), which move to the enclosing scope.
 * fn must be synchronous: a Promise would outlive the scope.
 */
export function tidy<T>(fn: () => T): T;
export function tidy<T>(name: string, fn: () => T): T;
export function tidy<T>(nameOrFn: string | (() => T), maybeFn?: () => T): T {
  const fn = typeof nameOrFn === 'function' ? nameOrFn : maybeFn!;
  const id = beginScope(typeof nameOrFn === 'string' ? nameOrFn : undefined);
  let result: T | undefined;
  try {
    result = fn();
    if (result instanceof Promise) {
      throw new Error('tidy() got an async function: scopes are synchronous (await between scopes, not inside one)');
    }
    return result;
  } finally {
    endScope(id, result);
  }
}

/** A scope for `using` blocks: `using scope = torch.scope();` frees what the block created. */
export function scope(name?: string): Disposable & { keep<T extends Scoped>(t: T): T } {
  const id = beginScope(name);
  const kept: Scoped[] = [];
  return {
    keep<T extends Scoped>(t: T): T {
      kept.push(t);
      return t;
    },
    [Symbol.dispose]() {
      endScope(id, kept);
    },
  };
}

export interface MemoryInfo {
  /** Tensor handles alive in the native table (the leak counter). */
  liveTensors: number;
  peakTensors: number;
  scopeDepth: number;
  /** Tensors owned by the open scopes. */
  scopedTensors: number;
}

export function memory(): MemoryInfo {
  const { live, peak } = native.liveTensors();
  let scoped = 0;
  for (const s of stack) scoped += s.tensors.filter((t) => t._scope === s.id && !t.isDisposed).length;
  return { liveTensors: live, peakTensors: peak, scopeDepth: stack.length, scopedTensors: scoped };
}
