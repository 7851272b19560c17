// Gradient (activation) checkpointing: a checkpointed segment of the forward pass keeps only its
// inputs and outputs; the backward pass recomputes what happens inside it. Activation memory then
// grows with the segment boundaries instead of every intermediate tensor.
//
// Why not torch.utils.checkpoint's design: PyTorch recomputes from inside the autograd engine (a
// custom Function's backward, or a saved-tensor unpack hook), but libtorch runs CUDA backward on
// its own device threads, where no JavaScript can be called. Here the engine never needs JS:
//
//   forward   each segment runs under no-grad; its outputs become fresh leaves that require grad,
//             so the graph built after it starts at them. An input that still carries autograd
//             history (not a leaf) is first *cut*: the caller's tensor object is rebound to a leaf
//             alias of the same data, and the tape keeps the history to backpropagate later.
//   backward  the engine runs the graph after the last segment, which leaves gradients on the
//             segments' output leaves. Then the tape is replayed newest first: a segment is
//             recomputed with grad (same RNG and autocast state as its forward) and backpropagated
//             with its outputs' gradients, which accumulates its parameters' gradients and its
//             inputs'; a cut backpropagates its history once with the gradient all its uses left
//             on the leaf. Newest first means every consumer of a tensor has delivered its
//             gradient before the tensor's producer is replayed.
//
// Each tensor's gradient is summed in the order the engine itself would sum it (reverse creation
// order), so on the CPU the gradients are bit-identical to a run without checkpointing (tested).
// Tensor.backward() and torch.autograd.backward() replay the tape; torch.autograd.grad() refuses
// to run while segments are pending, since it accumulates nothing a replay could continue from.
//
// Contract for segment functions (as for torch.utils.checkpoint): every tensor the segment
// differentiates through must be passed in `inputs` (tensors it closes over are treated as
// constants unless they are leaves such as parameters), and it must compute the same thing when
// called again.
import { enableGrad, isGradEnabled, isInferenceMode, noGrad } from './autograd.js';
import { setBackwardHooks } from './backward_hooks.js';
import { deviceType, type Device } from './device.js';
import { native } from './native.js';
import { defaultGenerator } from './random.js';
import { keep, tidy } from './scope.js';
import { Tensor } from './tensor.js';

type Inputs = readonly (Tensor | null)[];

interface Segment {
  kind: 'segment';
  fn: (...inputs: (Tensor | null)[]) => Tensor | Tensor[];
  /** The tape's own handles (the model's scopes free theirs long before backward). */
  inputs: (Tensor | null)[];
  /** Which inputs are the tape's own leaves (earlier segments' outputs, cut tensors). */
  fromTape: boolean[];
  outputs: Tensor[];
  rng: { device: Device; state: Tensor }[];
  autocast: { device: 'cpu' | 'cuda'; enabled: boolean; dtype: number }[];
}

interface Cut {
  kind: 'cut';
  /** The caller's tensor after the cut: a leaf whose .grad collects the gradient of all later uses. */
  leaf: Tensor;
  /** The same data with its autograd history. */
  history: Tensor;
}

type TapeEvent = Segment | Cut;

let tape: TapeEvent[] = [];
/** The caller-side tensors that are tape leaves: segment outputs and cut tensors. */
const tapeLeaves = new WeakSet<Tensor>();

function share(t: Tensor): Tensor {
  return keep(new Tensor(native.share(t._h)));
}

/**
 * Rebinds `x` to a leaf alias of its data and records its history, so that every later use sees
 * the leaf and the history is backpropagated once, with the sum of all their gradients.
 */
function cut(x: Tensor): void {
  const leaf = x.detach().requiresGrad_(true);
  const historyHandle = x._h;
  x._h = leaf._h;
  leaf._h = historyHandle;
  x._invalidate();
  leaf._invalidate();
  tapeLeaves.add(x);
  tape.push({ kind: 'cut', leaf: share(x), history: keep(leaf) });
}

const AUTOCAST_DEVICES = ['cpu', 'cuda'] as const;

function rngDevices(inputs: Inputs): Device[] {
  const devices = new Set<Device>(['cpu']);
  for (const x of inputs) if (x && deviceType(x.device) === 'cuda') devices.add(x.device.includes(':') ? x.device : 'cuda:0');
  return [...devices];
}

function withRngStates<T>(states: Segment['rng'], fn: () => T): T {
  if (states.length === 0) return fn();
  // fork: the replay draws what the forward drew, and the streams continue as if it never ran
  const saved = states.map(({ device }) => ({ device, state: defaultGenerator(device).getState() }));
  try {
    for (const { device, state } of states) defaultGenerator(device).setState(state);
    return fn();
  } finally {
    for (const { device, state } of saved) {
      defaultGenerator(device).setState(state);
      state.dispose();
    }
  }
}

function withAutocastStates<T>(states: Segment['autocast'], fn: () => T): T {
  const previous = states.map(({ device, enabled, dtype }) => ({ device, prev: native.autocastEnter(device, dtype, enabled) }));
  try {
    return fn();
  } finally {
    for (const { device, prev } of previous.reverse()) native.autocastExit(device, prev[0], prev[1]);
  }
}

/**
 * Autocast caches the low-precision copies it makes of fp32 weights until its outermost region
 * ends; a copy made under no-grad leads nowhere in backward, so a later grad-mode use of the same
 * weight in the region would get no gradient. libtorch 2.13 no longer caches under no-grad (the
 * test of this case passes without the guard there); older 2.x builds, such as the GPU machines'
 * 2.11, are not known to, so segments run under no-grad without the cache.
 */
function withoutAutocastCache<T>(fn: () => T): T {
  const prev = native.autocastCacheEnabled(false);
  try {
    return fn();
  } finally {
    native.autocastCacheEnabled(prev);
  }
}

export interface CheckpointOptions {
  /** Restore the RNG state of the forward for the recomputation (default true, as PyTorch). */
  preserveRngState?: boolean;
}

/**
 * Runs `fn(...inputs)` as a checkpointed segment when autograd is recording, and plainly
 * otherwise (no-grad, inference mode). Returns fn's output(s) as leaves whose gradients reach
 * fn's parameters and inputs when backward() runs.
 */
export function checkpoint<T extends Tensor | Tensor[]>(fn: (...inputs: (Tensor | null)[]) => T, inputs: Inputs, o: CheckpointOptions = {}): T {
  if (!isGradEnabled() || isInferenceMode()) return fn(...inputs);
  for (const x of inputs) if (x && x.requiresGrad && !x.isLeaf) cut(x);
  const rng = (o.preserveRngState ?? true)
    ? rngDevices(inputs).map((device) => ({ device, state: keep(defaultGenerator(device).getState()) }))
    : [];
  const autocast = AUTOCAST_DEVICES.map((device) => {
    const [enabled, dtype] = native.autocastState(device);
    return { device, enabled, dtype };
  });
  const result = tidy(() => withoutAutocastCache(() => noGrad(() => fn(...inputs))));
  const outs = Array.isArray(result) ? result : [result];
  const leaves = outs.map((t) => {
    const leaf = t.detach();
    if (leaf.isFloatingPoint()) leaf.requiresGrad_(true);
    t.dispose();
    return leaf;
  });
  for (const leaf of leaves) tapeLeaves.add(leaf);
  tape.push({
    kind: 'segment', fn, inputs: inputs.map((x) => (x ? share(x) : null)), fromTape: inputs.map((x) => x !== null && tapeLeaves.has(x)),
    outputs: leaves.map(share), rng, autocast,
  });
  return (Array.isArray(result) ? leaves : leaves[0]) as T;
}

/** Segments recorded and not yet replayed by a backward pass. */
export function pendingCheckpoints(): number {
  return tape.filter((e) => e.kind === 'segment').length;
}

/** Drops recorded segments without replaying them (after a forward pass that will never be backpropagated). */
export function discardCheckpoints(): void {
  const events = tape;
  tape = [];
  release(events);
}

function release(events: TapeEvent[]): void {
  for (const e of events) {
    if (e.kind === 'cut') {
      e.leaf.dispose();
      e.history.dispose();
    } else {
      for (const t of [...e.inputs, ...e.outputs, ...e.rng.map((r) => r.state)]) t?.dispose();
    }
  }
}

function replaySegment(s: Segment): void {
  tidy(() => {
    const grads = s.outputs.map((o) => o.grad);
    if (grads.every((g) => g === null)) return; // not part of this backward's graph
    // A tape leaf may already hold gradient from its later consumers. The engine without
    // checkpointing would sum that first and this segment's contributions after it, in one buffer;
    // feeding the leaf through a view whose gradient starts as that sum does the same here (a
    // second backward into the leaf would add the segment's summed contributions to it instead,
    // a different rounding).
    const roots: number[] = [];
    const rootGrads: number[] = [];
    const inputs = s.inputs.map((x, i) => {
      if (!x || !s.fromTape[i]) return x;
      const prior = x.grad;
      if (!prior) return x;
      x.grad = null;
      const view = enableGrad(() => x.view(x.shape));
      roots.push(view._h);
      rootGrads.push(prior._h);
      return view;
    });
    const result = withRngStates(s.rng, () => withAutocastStates(s.autocast, () => enableGrad(() => s.fn(...inputs))));
    const outs = Array.isArray(result) ? result : [result];
    if (outs.length !== s.outputs.length) throw new Error(`a checkpointed segment returned ${outs.length} tensors when recomputed, ${s.outputs.length} in its forward`);
    outs.forEach((t, i) => {
      const g = grads[i];
      if (g && t.requiresGrad) {
        roots.push(t._h);
        rootGrads.push(g._h);
      }
    });
    // outside the autocast region, as the user's own backward() call is
    if (roots.length) native.backward(roots, rootGrads, false, false);
    replay(); // segments nested in this one recorded themselves during the recomputation
  });
  for (const o of s.outputs) o.grad = null;
}

function flushCut(c: Cut): void {
  tidy(() => {
    const g = c.leaf.grad;
    if (g) native.backward([c.history._h], [g._h], false, false);
  });
  c.leaf.grad = null;
}

function replay(): void {
  const events = tape;
  tape = [];
  try {
    for (let i = events.length - 1; i >= 0; i--) {
      const e = events[i]!;
      if (e.kind === 'cut') flushCut(e);
      else replaySegment(e);
    }
  } catch (e) {
    if (/backward through the graph a second time/.test((e as Error).message)) {
      throw new Error('gradient checkpointing: a tensor computed outside the checkpointed segments reaches two of them '
        + 'through different operations, so its history would be backpropagated twice; make the segment boundaries '
        + 'such that every tensor made between segments feeds one segment, or put that computation inside a segment', { cause: e });
    }
    throw e;
  } finally {
    release(events);
  }
}

setBackwardHooks({
  before(o) {
    if (tape.length && (o.retainGraph || o.createGraph)) {
      throw new Error('backward with retainGraph or createGraph is not supported through checkpointed segments');
    }
  },
  after() {
    if (tape.length) replay();
  },
  beforeGrad() {
    if (tape.length) {
      throw new Error('torch.grad cannot differentiate through checkpointed segments (backward() replays them); '
        + 'run the forward without checkpointing, or call discardCheckpoints() if the recorded segments are not needed');
    }
  },
});
