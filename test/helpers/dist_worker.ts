// A process of the c10d tests (test/distributed.test.ts): joins a Gloo group from torchrun's
// variables and runs one scenario, printing its results as one JSON line.
import * as torch from '../../src/torch/index.js';

const rank = Number(process.env.RANK);
const size = Number(process.env.WORLD_SIZE);
const scenario = process.argv[2];
const timeoutMs = Number(process.env.TEST_TIMEOUT_MS ?? 20000);

const store = await torch.distributed.Store.connect({ host: '127.0.0.1', port: Number(process.env.MASTER_PORT), isServer: rank === 0, worldSize: size, timeoutMs });
const g = await torch.distributed.ProcessGroup.create(store, { backend: 'gloo', rank, size, timeoutMs, name: 'test' });

if (scenario === 'collectives') {
  const sum = torch.tensor([rank + 1, 10 * (rank + 1)], { dtype: 'float64' });
  const max = torch.tensor([rank], { dtype: 'int64' });
  const b = torch.tensor([rank === 1 ? 42 : -1, rank]);
  const gathered = Array.from({ length: size }, () => torch.zeros([2]));
  const scattered = torch.zeros([1]);
  // several collectives in flight at once, awaited together
  const works = [
    g.allReduce(sum, 'sum'), g.allReduce(max, 'max'), g.broadcast(b, 1),
    g.allGather(gathered, torch.tensor([rank, rank * rank])),
    g.reduceScatter(scattered, Array.from({ length: size }, (_, r) => torch.tensor([100 * r + rank])), 'sum'),
    g.barrier(),
  ];
  await torch.distributed.waitAll(works);
  store.set(`hello/${rank}`, `from ${rank}`);
  const peer = await store.get(`hello/${(rank + 1) % size}`);
  console.log(JSON.stringify({ rank, sum: sum.toArray(), max: max.toArray(), b: b.toArray(), gathered: gathered.map((t) => t.toArray()), scattered: scattered.toArray(), peer, added: store.add('counter', 1) >= 1 }));
} else if (scenario === 'absent') {
  // rank 1 never joins the collective: rank 0's fails within the timeout, naming itself
  if (rank === 0) {
    const t0 = Date.now();
    try {
      await g.allReduce(torch.ones([4])).wait();
      console.log(JSON.stringify({ rank, error: null }));
    } catch (e) {
      console.log(JSON.stringify({ rank, error: (e as Error).message, seconds: (Date.now() - t0) / 1000 }));
    }
  } else {
    await new Promise((r) => setTimeout(r, timeoutMs + 3000));
    console.log(JSON.stringify({ rank }));
  }
} else if (scenario === 'reducer') {
  // a small model; each rank's input differs, so its gradients do
  const model = new torch.nn.Sequential(new torch.nn.Linear(8, 16), new torch.nn.Linear(16, 16), new torch.nn.Linear(16, 4));
  const params = model.parameters();
  for (const p of params) await g.broadcast(p, 0).wait();
  const buckets = params.map((_, i) => [params.length - 1 - i]); // one parameter per bucket, reverse order
  const reducer = new torch.distributed.GradientReducer(g, params, buckets);
  const x = torch.randn([4, 8], { generator: new torch.Generator('cpu', 10 + rank) });
  const run = async (arm: boolean, micro: number) => {
    model.zeroGrad();
    for (let m = 0; m < micro; m++) {
      if (arm && m === micro - 1) reducer.arm();
      torch.tidy(() => model.forward(x.mul(m + 1)).pow(2).sum().backward());
    }
    // the expected average, from plain all-reduces of copies of this rank's gradients
    const expected = params.map((p) => p.grad!.clone());
    await torch.distributed.waitAll(expected.map((e) => g.allReduce(e, 'sum')));
    const early = await reducer.finish();
    const maxDiff = Math.max(...params.map((p, i) => p.grad!.sub(expected[i]!.div(size)).abs().max().item()));
    return { early, maxDiff };
  };
  console.log(JSON.stringify({ rank, buckets: buckets.length, armed: await run(true, 1), accumulated: await run(true, 3), after: await run(false, 1) }));
} else if (scenario === 'avg-on-gloo') {
  try {
    g.allReduce(torch.ones([1]), 'avg');
    console.log(JSON.stringify({ rank, error: null }));
  } catch (e) {
    console.log(JSON.stringify({ rank, error: (e as Error).message }));
  }
}
g.destroy();
