// TensorBoard event files (what tensorboardX / torch.utils.tensorboard write): a TFRecord stream of
// Event protos. Each record: uint64 length, uint32 masked CRC-32C of the length, the bytes, uint32
// masked CRC-32C of the bytes. An Event is {wall_time: double = 1, step: int64 = 2,
// file_version: string = 3 | summary: Summary = 5}; Summary {value: Value = 1 repeated};
// Value {tag: string = 1, simple_value: float = 2}.
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1; // Castagnoli polynomial, reflected
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15 and add a constant. */
export function maskedCrc(buf: Uint8Array): number {
  const c = crc32c(buf);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

function varint(n: number | bigint): number[] {
  let v = BigInt(n);
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}
const key = (field: number, wire: number) => varint((field << 3) | wire);
function lengthDelimited(field: number, bytes: Uint8Array): number[] {
  return [...key(field, 2), ...varint(bytes.length), ...bytes];
}

function event(o: { wallTime: number; step: number; fileVersion?: string; scalars?: Record<string, number> }): Uint8Array {
  const wall = Buffer.alloc(8);
  wall.writeDoubleLE(o.wallTime);
  const parts: number[] = [...key(1, 1), ...wall, ...key(2, 0), ...varint(o.step)];
  if (o.fileVersion) parts.push(...lengthDelimited(3, Buffer.from(o.fileVersion)));
  if (o.scalars) {
    const values: number[] = [];
    for (const [tag, v] of Object.entries(o.scalars)) {
      const f = Buffer.alloc(4);
      f.writeFloatLE(v);
      values.push(...lengthDelimited(1, Uint8Array.from([...lengthDelimited(1, Buffer.from(tag)), ...key(2, 5), ...f])));
    }
    parts.push(...lengthDelimited(5, Uint8Array.from(values)));
  }
  return Uint8Array.from(parts);
}

function record(data: Uint8Array): Buffer {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(data.length));
  const lenCrc = Buffer.alloc(4);
  lenCrc.writeUInt32LE(maskedCrc(len));
  const dataCrc = Buffer.alloc(4);
  dataCrc.writeUInt32LE(maskedCrc(data));
  return Buffer.concat([len, lenCrc, Buffer.from(data), dataCrc]);
}

export class EventWriter {
  readonly path: string;
  constructor(dir: string) {
    mkdirSync(dir, { recursive: true });
    const now = Date.now() / 1000;
    this.path = join(dir, `events.out.tfevents.${Math.floor(now)}.${hostname()}.${process.pid}.0`);
    writeFileSync(this.path, record(event({ wallTime: now, step: 0, fileVersion: 'brain.Event:2' })));
  }
  scalars(step: number, values: Record<string, number>): void {
    appendFileSync(this.path, record(event({ wallTime: Date.now() / 1000, step, scalars: values })));
  }
}

/** Reads an event file back (and checks every CRC): [{step, wallTime, scalars}]. */
export function readEvents(buf: Buffer): { step: number; wallTime: number; fileVersion?: string; scalars: Record<string, number> }[] {
  const out: { step: number; wallTime: number; fileVersion?: string; scalars: Record<string, number> }[] = [];
  let p = 0;
  const readVarint = (b: Uint8Array, at: number): [bigint, number] => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const byte = b[at++]!;
      v |= BigInt(byte & 0x7f) << shift;
      shift += 7n;
      if (!(byte & 0x80)) return [v, at];
    }
  };
  const fields = (b: Uint8Array): [number, number, bigint | Uint8Array | number][] => {
    const f: [number, number, bigint | Uint8Array | number][] = [];
    let q = 0;
    while (q < b.length) {
      const [k, q1] = readVarint(b, q);
      const field = Number(k >> 3n);
      const wire = Number(k & 7n);
      q = q1;
      if (wire === 0) {
        const [v, q2] = readVarint(b, q);
        f.push([field, wire, v]);
        q = q2;
      } else if (wire === 1) {
        f.push([field, wire, Buffer.from(b.subarray(q, q + 8)).readDoubleLE(0)]);
        q += 8;
      } else if (wire === 5) {
        f.push([field, wire, Buffer.from(b.subarray(q, q + 4)).readFloatLE(0)]);
        q += 4;
      } else if (wire === 2) {
        const [len, q2] = readVarint(b, q);
        f.push([field, wire, b.subarray(q2, q2 + Number(len))]);
        q = q2 + Number(len);
      } else throw new Error(`unexpected wire type ${wire}`);
    }
    return f;
  };
  while (p < buf.length) {
    const len = Number(buf.readBigUInt64LE(p));
    if (buf.readUInt32LE(p + 8) !== maskedCrc(buf.subarray(p, p + 8))) throw new Error(`bad length CRC at ${p}`);
    const data = buf.subarray(p + 12, p + 12 + len);
    if (buf.readUInt32LE(p + 12 + len) !== maskedCrc(data)) throw new Error(`bad data CRC at ${p}`);
    p += 16 + len;
    const e = { step: 0, wallTime: 0, scalars: {} as Record<string, number>, fileVersion: undefined as string | undefined };
    for (const [field, , v] of fields(data)) {
      if (field === 1) e.wallTime = v as number;
      else if (field === 2) e.step = Number(v);
      else if (field === 3) e.fileVersion = Buffer.from(v as Uint8Array).toString();
      else if (field === 5) {
        for (const [vf, , value] of fields(v as Uint8Array)) {
          if (vf !== 1) continue;
          let tag = '';
          let simple = NaN;
          for (const [f2, , x] of fields(value as Uint8Array)) {
            if (f2 === 1) tag = Buffer.from(x as Uint8Array).toString();
            if (f2 === 2) simple = x as number;
          }
          e.scalars[tag] = simple;
        }
      }
    }
    out.push(e);
  }
  return out;
}
