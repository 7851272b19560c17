// Gradient checkpointing in the tensor layer: the same gradients, bit for bit, as a run without
// it (the expected values are the plain run's), for chains, skip connections, inputs with
// autograd history used several times, dropout (RNG replay), bf16 autocast and nested segments;
// and the refusals that keep misuse loud.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as torch from '../src/torch/index.js';
import { assertClose, noLeak } from './helpers/assert.js';

const { nn, F, tidy } = torch;

class Block extends nn.Module {
  readonly fc1: torch.nn.Linear;
  readonly fc2: torch.nn.Linear;
  readonly emb: torch.nn.Linear;
  constructor(dim: number, readonly dropout = 0) {
    super();
    this.fc1 = this.registerModule('fc1', new nn.Linear(dim, dim * 2));
    this.fc2 = this.registerModule('fc2', new nn.Linear(dim * 2, dim));
    this.emb = this.registerModule('emb', new nn.Linear(dim, dim * 2));
  }
  forward(x: torch.Tensor, temb: torch.Tensor): torch.Tensor {
    return tidy(() => {
      let h = F.gelu(this.fc1.forward(F.layerNorm(x, [x.shape[1]!]))).add(this.emb.forward(F.silu(temb)));
      if (this.dropout) h = F.dropout(h, this.dropout, true);
      return this.fc2.forward(h).add(x);
    });
  }
}

/** A small UNet-shaped net: a time embedding used by every block, skip connections consumed twice. */
class Net extends nn.Module {
  readonly time: torch.nn.Linear;
  readonly inp: torch.nn.Linear;
  readonly down: torch.nn.ModuleList<Block>;
  readonly up: torch.nn.ModuleList<Block>;
  readonly mix: torch.nn.ModuleList<torch.nn.Linear>;
  readonly out: torch.nn.Linear;
  checkpointing = false;
  constructor(dim: number, dropout = 0) {
    super();
    this.time = this.registerModule('time', new nn.Linear(1, dim));
    this.inp = this.registerModule('inp', new nn.Linear(dim, dim));
    this.down = this.registerModule('down', new nn.ModuleList([new Block(dim, dropout), new Block(dim, dropout)]));
    this.up = this.registerModule('up', new nn.ModuleList([new Block(dim, dropout), new Block(dim, dropout)]));
    this.mix = this.registerModule('mix', new nn.ModuleList([new nn.Linear(2 * dim, dim), new nn.Linear(2 * dim, dim)]));
    this.out = this.registerModule('out', new nn.Linear(dim, dim));
  }
  #block(b: Block, x: torch.Tensor, temb: torch.Tensor): torch.Tensor {
    return this.checkpointing ? torch.checkpoint((h, t) => b.forward(h!, t!), [x, temb]) : b.forward(x, temb);
  }
  forward(x: torch.Tensor, t: torch.Tensor): torch.Tensor {
    return tidy(() => {
      const temb = F.silu(this.time.forward(t));
      let h = this.inp.forward(x); // glue with history, fed to a segment and kept as a skip
      const skips = [h];
      for (const b of this.down) {
        h = this.#block(b, h, temb);
        h = h.mul(0.5).add(h.tanh()); // glue between segments
        skips.push(h);
      }
      this.up.children().forEach((b, i) => {
        const skip = skips.pop()!;
        h = this.#block(b as Block, this.mix.at(i).forward(torch.cat([h, skip], 1)), temb);
      });
      return this.out.forward(h.add(skips.pop()!));
    });
  }
}

function gradsOf(net: Net, x: torch.Tensor, o: { checkpointing: boolean; seed?: number; autocast?: boolean }): Map<string, number[]> {
  net.zeroGrad();
  net.checkpointing = o.checkpointing;
  if (o.seed !== undefined) torch.manualSeed(o.seed);
  tidy(() => {
    const run = () => net.forward(x, torch.tensor([[0.3], [0.7], [0.1]]));
    const y = o.autocast ? torch.autocast({ device: 'cpu', dtype: 'bfloat16' }, run) : run();
    y.float().pow(2).mean().backward();
  });
  const grads = new Map<string, number[]>();
  for (const [name, p] of net.namedParameters()) grads.set(name, tidy(() => p.grad!.toArray()));
  grads.set('input', tidy(() => x.grad!.toArray()));
  x.grad = null;
  return grads;
}

function assertSameGrads(a: Map<string, number[]>, b: Map<string, number[]>): void {
  assert.deepEqual([...a.keys()], [...b.keys()]);
  const bad = [...a].filter(([k, v]) => v.some((x, i) => x !== b.get(k)![i])).map(([k, v]) => `${k} (max |diff| ${Math.max(...v.map((x, i) => Math.abs(x - b.get(k)![i]!))).toExponential(2)})`);
  assert.deepEqual(bad, [], `gradients differ: ${bad.join(", ")}`);
}

function setup(dropout = 0): { net: Net; x: torch.Tensor } {
  torch.manualSeed(11);
  const net = new Net(8, dropout);
  const x = torch.randn([3, 8]).requiresGrad_(true).keep();
  return { net, x };
}

describe('torch.checkpoint', () => {
  test('gradients of parameters and inputs are bit-identical to a run without checkpointing', () => {
    const { net, x } = setup();
    const plain = gradsOf(net, x, { checkpointing: false });
    const ckpt = noLeak(() => gradsOf(net, x, { checkpointing: true }));
    assert.equal(torch.pendingCheckpoints(), 0, 'backward replays and clears the tape');
    assertSameGrads(plain, ckpt);
    net.dispose();
    x.dispose();
  });

  test('dropout inside a segment: the recomputation replays the same random draws', () => {
    const { net, x } = setup(0.3);
    const plain = gradsOf(net, x, { checkpointing: false, seed: 5 });
    const after = tidy(() => torch.rand([4]).toArray());
    const ckpt = gradsOf(net, x, { checkpointing: true, seed: 5 });
    assertSameGrads(plain, ckpt);
    assert.deepEqual(tidy(() => torch.rand([4]).toArray()), after, 'the RNG stream continues as if nothing were recomputed');
    net.dispose();
    x.dispose();
  });

  test('bf16 autocast: the recomputation runs under the autocast state of the forward', () => {
    const { net, x } = setup();
    const plain = gradsOf(net, x, { checkpointing: false, autocast: true });
    const ckpt = gradsOf(net, x, { checkpointing: true, autocast: true });
    assertSameGrads(plain, ckpt);
    net.dispose();
    x.dispose();
  });

  test('a weight used in a segment and again outside it under autocast still gets both gradients', () => noLeak(() => {
    torch.manualSeed(4);
    const lin = new nn.Linear(4, 4);
    const x = torch.randn([2, 4]);
    const run = (ckpt: boolean) => {
      lin.zeroGrad();
      tidy(() => torch.autocast({ device: 'cpu', dtype: 'bfloat16' }, () => {
        const h = ckpt ? torch.checkpoint((a) => lin.forward(a!), [x]) : lin.forward(x);
        return lin.forward(h.float().tanh()); // the second use would find a grad-less cached cast
      }).float().sum().backward());
      return tidy(() => lin.weight.grad!.toArray());
    };
    // not bit-equal: without checkpointing both uses share one cached bf16 cast, whose gradient is
    // summed in bf16; the recomputation makes its own cast, so the two halves meet in float32
    assertClose(run(true), run(false), 1e-2, 1e-2, 'lin.weight.grad');
    lin.dispose();
    x.dispose();
  }));

  test('nested segments are replayed inside their parent', () => noLeak(() => {
    torch.manualSeed(2);
    const inner = new nn.Linear(4, 4);
    const outer = new nn.Linear(4, 4);
    const x = torch.randn([2, 4]).requiresGrad_(true);
    const run = (nested: boolean) => {
      inner.zeroGrad();
      outer.zeroGrad();
      x.grad = null;
      tidy(() => {
        const f = (h: torch.Tensor) => F.gelu(inner.forward(h));
        const body = (h: torch.Tensor | null) => outer.forward(nested ? torch.checkpoint((a) => f(a!), [h]) : f(h!)).tanh();
        (nested ? torch.checkpoint(body, [x.mul(2)]) : body(x.mul(2))).sum().backward();
      });
      return tidy(() => [inner.weight.grad!.toArray(), outer.weight.grad!.toArray(), x.grad!.toArray()]);
    };
    assert.deepEqual(run(true), run(false));
    inner.dispose();
    outer.dispose();
    x.dispose();
  }));

  test('without autograd recording a segment is a plain call; misuse is refused loudly', () => noLeak(() => tidy(() => {
    const lin = new nn.Linear(3, 3);
    const x = torch.ones([1, 3]);
    const y = torch.noGrad(() => torch.checkpoint((h) => lin.forward(h!), [x]));
    assert.equal(y.requiresGrad, false);
    assert.equal(torch.pendingCheckpoints(), 0);
    const z = torch.checkpoint((h) => lin.forward(h!), [x]).sum();
    assert.equal(torch.pendingCheckpoints(), 1);
    assert.throws(() => torch.grad([z], [lin.weight]), /cannot differentiate through checkpointed segments/);
    assert.throws(() => z.backward(undefined, { retainGraph: true }), /retainGraph or createGraph is not supported/);
    torch.discardCheckpoints();
    assert.equal(torch.pendingCheckpoints(), 0);
    // a tensor made between segments that reaches two of them along different paths
    const shared = lin.forward(x.requiresGrad_(true));
    const a = torch.checkpoint((h) => lin.forward(h!), [shared.tanh()]);
    const b = torch.checkpoint((h) => lin.forward(h!), [shared.sigmoid()]);
    assert.throws(() => a.add(b).sum().backward(), /reaches two of them through different operations/);
    assert.equal(torch.pendingCheckpoints(), 0, 'a failed replay still releases the tape');
    lin.dispose();
  })));
});
