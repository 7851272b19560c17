// A fixture case in the ../shared/fixtures format: cases/<name>.json (metadata, tolerances) and
// optionally cases/<name>.safetensors (F32 tensors). See that folder's README.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as torch from '../torch/index.js';

export interface Tolerance {
  atol: number;
  rtol: number;
}

export interface CaseJson {
  name: string;
  kind: string;
  description?: string;
  tensor_file?: string | null;
  tolerances?: Record<string, { suggested?: Tolerance }>;
  tolerance?: Partial<Tolerance> | Record<string, Partial<Tolerance>>;
  [key: string]: unknown;
}

export class FixtureCase {
  readonly json: CaseJson;
  readonly #file: torch.SafetensorsFile | null;

  constructor(readonly path: string) {
    this.json = JSON.parse(readFileSync(path, 'utf8')) as CaseJson;
    const tf = this.json.tensor_file;
    const tensorPath = tf && tf !== 'None' ? join(dirname(path), tf) : null;
    if (tensorPath && !existsSync(tensorPath)) throw new Error(`${path}: tensor file ${tf} is missing`);
    this.#file = tensorPath ? torch.SafetensorsFile.open(tensorPath) : null;
  }

  get name(): string {
    return this.json.name;
  }
  get kind(): string {
    return this.json.kind;
  }
  /** The folder holding the fixture's model folders (the parent of cases/). */
  get root(): string {
    return dirname(dirname(this.path));
  }

  has(name: string): boolean {
    return this.#file?.tensors.has(name) ?? false;
  }
  tensor(name: string): torch.Tensor {
    if (!this.#file) throw new Error(`${this.name}: case has no tensor file`);
    return this.#file.get(name);
  }
  tensorNames(): string[] {
    return this.#file?.keys() ?? [];
  }

  /**
   * The tolerance for one output: the generator's suggested atol/rtol for it, else a case-level
   * hand-set tolerance (global or per tensor, matched by exact name or by prefix/suffix), else none.
   */
  tolerance(tensor: string): Tolerance | undefined {
    const suggested = this.json.tolerances?.[tensor]?.suggested;
    if (suggested) return suggested;
    const t = this.json.tolerance;
    if (!t) return undefined;
    if (typeof (t as Partial<Tolerance>).atol === 'number') return { atol: (t as Tolerance).atol, rtol: (t as Partial<Tolerance>).rtol ?? 0 };
    const map = t as Record<string, Partial<Tolerance>>;
    const key = Object.keys(map).find((k) => tensor === k || tensor.endsWith(`.${k}`) || tensor.startsWith(`${k}.`));
    if (key && typeof map[key]!.atol === 'number') return { atol: map[key]!.atol!, rtol: map[key]!.rtol ?? 0 };
    return undefined;
  }

  close(): void {
    this.#file?.close();
  }
}
