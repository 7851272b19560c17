// What runs around every engine backward: the gradient-checkpoint replay (checkpoint.ts) registers
// here, so that tensor.ts and autograd.ts can call it without importing that machinery (which
// imports them).
export interface BackwardOptions {
  retainGraph?: boolean;
  createGraph?: boolean;
}

export interface BackwardHooks {
  /** Before the engine runs: may refuse options the hook cannot honour. */
  before(o: BackwardOptions): void;
  /** After the engine has run. */
  after(): void;
  /** Before torch.autograd.grad, which accumulates nothing and so cannot be followed by a replay. */
  beforeGrad(): void;
}

let hooks: BackwardHooks | null = null;

export function setBackwardHooks(h: BackwardHooks): void {
  hooks = h;
}

/** Runs the engine call `run` between the registered hooks. */
export function runBackward(run: () => void, o: BackwardOptions): void {
  hooks?.before(o);
  run();
  hooks?.after();
}

export function checkGrad(): void {
  hooks?.beforeGrad();
}
