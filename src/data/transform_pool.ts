// dataloader_num_workers worker threads decoding and transforming images in parallel; with 0
// workers everything runs on the calling thread (as PyTorch's DataLoader with num_workers=0).
import { Worker } from 'node:worker_threads';
import { ImageDecodeError } from './decode.js';
import { prepareImage, type PrepareJob } from './prepare.js';

type Pending = { resolve: (p: Uint8Array) => void; reject: (e: Error) => void };

export class TransformPool {
  readonly #workers: Worker[] = [];
  readonly #pending = new Map<number, Pending>();
  readonly #load: number[] = [];
  #nextId = 0;

  constructor(readonly numWorkers: number) {
    for (let i = 0; i < numWorkers; i++) {
      const w = new Worker(new URL('./transform_worker.js', import.meta.url));
      w.unref();
      w.on('message', (m: { id: number; pixels?: Uint8Array; error?: string; name?: string }) => {
        const p = this.#pending.get(m.id);
        if (!p) return;
        this.#pending.delete(m.id);
        this.#load[i]!--;
        if (m.pixels) p.resolve(m.pixels);
        else p.reject(m.name === 'ImageDecodeError' ? new ImageDecodeError(m.error!) : new Error(m.error));
      });
      w.on('error', (e) => {
        for (const p of this.#pending.values()) p.reject(e);
        this.#pending.clear();
      });
      this.#workers.push(w);
      this.#load.push(0);
    }
  }

  run(job: PrepareJob): Promise<Uint8Array> {
    if (this.#workers.length === 0) return prepareImage(job);
    // the least busy worker gets the job
    let best = 0;
    for (let i = 1; i < this.#load.length; i++) if (this.#load[i]! < this.#load[best]!) best = i;
    const id = this.#nextId++;
    this.#load[best]!++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      // the bytes are copied: a Buffer from a file read may share its ArrayBuffer with others
      this.#workers[best]!.postMessage({ id, job: { ...job, bytes: new Uint8Array(job.bytes) } });
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
    this.#workers.length = 0;
  }
}
