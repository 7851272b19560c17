// The optimizer base: parameter groups with their hyper-parameters, per-parameter state kept
// outside memory scopes, and a state dict (tensors + JSON) that round-trips exactly.
import { keep } from '../scope.js';
import type { Tensor } from '../tensor.js';

export interface ParamGroup<H> {
  params: Tensor[];
  hyper: H & { lr: number };
  /** Learning rate the group was created with (what LR schedules scale). */
  initialLr: number;
}

export type ParamState = Record<string, Tensor | number>;

export interface OptimizerStateDict {
  /** state tensors as "<param index>.<name>" (indices count across groups, as PyTorch). */
  tensors: Map<string, Tensor>;
  /** hyper-parameters per group and the non-tensor state. */
  meta: {
    optimizer: string;
    groups: { hyper: Record<string, unknown>; initialLr: number; params: number[] }[];
    scalars: Record<string, Record<string, number>>;
  };
}

export abstract class Optimizer<H extends { lr: number }> {
  readonly paramGroups: ParamGroup<H>[] = [];
  protected readonly state = new Map<Tensor, ParamState>();

  protected constructor(readonly name: string, params: Tensor[] | { params: Tensor[]; [k: string]: unknown }[], defaults: H) {
    const groups = params.length && !(isTensorLike(params[0])) ? (params as { params: Tensor[] }[]) : [{ params: params as Tensor[] }];
    const seen = new Set<Tensor>();
    for (const g of groups) {
      const { params: ps, ...overrides } = g;
      for (const p of ps) {
        if (seen.has(p)) throw new Error('some parameters appear in more than one parameter group');
        seen.add(p);
      }
      const hyper = { ...defaults, ...overrides } as H;
      this.validate(hyper);
      this.paramGroups.push({ params: ps, hyper, initialLr: hyper.lr });
    }
  }

  protected abstract validate(h: H): void;

  /** Applies one update from the parameters' current .grad (parameters without grad are skipped). */
  abstract step(): void;

  /** Sets every parameter's gradient to None. */
  zeroGrad(): void {
    for (const g of this.paramGroups) for (const p of g.params) p.grad = null;
  }

  /** State of a parameter, created on first use; tensors in it are kept out of scopes. */
  protected stateOf(p: Tensor, init: () => ParamState): ParamState {
    let s = this.state.get(p);
    if (!s) {
      s = init();
      for (const v of Object.values(s)) if (typeof v !== 'number') keep(v);
      this.state.set(p, s);
    }
    return s;
  }

  stateDict(): OptimizerStateDict {
    const tensors = new Map<string, Tensor>();
    const scalars: Record<string, Record<string, number>> = {};
    const groups: OptimizerStateDict['meta']['groups'] = [];
    let index = 0;
    for (const g of this.paramGroups) {
      const ids: number[] = [];
      for (const p of g.params) {
        const s = this.state.get(p);
        if (s) {
          for (const [k, v] of Object.entries(s)) {
            if (typeof v === 'number') (scalars[index] ??= {})[k] = v;
            else tensors.set(`${index}.${k}`, v);
          }
        }
        ids.push(index++);
      }
      groups.push({ hyper: { ...g.hyper }, initialLr: g.initialLr, params: ids });
    }
    return { tensors, meta: { optimizer: this.name, groups, scalars } };
  }

  /** Restores hyper-parameters and state (state tensors are copied to each parameter's device). */
  loadStateDict(sd: OptimizerStateDict): void {
    if (sd.meta.optimizer !== this.name) throw new Error(`optimizer state is for ${sd.meta.optimizer}, not ${this.name}`);
    if (sd.meta.groups.length !== this.paramGroups.length) {
      throw new Error(`optimizer state has ${sd.meta.groups.length} parameter groups, the optimizer ${this.paramGroups.length}`);
    }
    sd.meta.groups.forEach((saved, i) => {
      if (saved.params.length !== this.paramGroups[i]!.params.length) {
        throw new Error(`parameter group ${i} has ${this.paramGroups[i]!.params.length} parameters, the saved state ${saved.params.length}`);
      }
    });
    this.disposeState();
    let index = 0;
    sd.meta.groups.forEach((saved, i) => {
      const g = this.paramGroups[i]!;
      g.hyper = { ...g.hyper, ...(saved.hyper as Partial<H>) };
      g.initialLr = saved.initialLr;
      for (const p of g.params) {
        const s: ParamState = { ...(sd.meta.scalars[index] ?? {}) };
        for (const [key, t] of sd.tensors) {
          const dot = key.indexOf('.');
          if (Number(key.slice(0, dot)) !== index) continue;
          s[key.slice(dot + 1)] = keep(t.to({ device: p.device, copy: true }));
        }
        if (Object.keys(s).length) this.state.set(p, s);
        index++;
      }
    });
  }

  protected disposeState(): void {
    for (const s of this.state.values()) for (const v of Object.values(s)) if (typeof v !== 'number') v.dispose();
    this.state.clear();
  }

  /** Frees the optimizer state (not the parameters). */
  dispose(): void {
    this.disposeState();
  }
}

function isTensorLike(v: unknown): boolean {
  return typeof v === 'object' && v !== null && '_h' in v;
}

/** Groups tensors by (device, dtype): foreach kernels take lists on one device and dtype. */
export function groupByDeviceAndDtype(indices: number[], params: Tensor[]): number[][] {
  const groups = new Map<string, number[]>();
  for (const i of indices) {
    const p = params[i]!;
    const key = `${p.device}/${p.dtype}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = []));
    g.push(i);
  }
  return [...groups.values()];
}
