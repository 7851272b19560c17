// A minimal zip reader for PyTorch checkpoints (torch.save writes an uncompressed zip, ZIP64 for
// large files). It reads the central directory only; entry data is located, not loaded.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';
import { UserError } from '../../util/errors.js';

export interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

export class ZipError extends UserError {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'ZipError';
  }
}

/**
 * How far a compressed entry may inflate: at least 64 MiB, else 100 times the file's size
 * (torch.save stores entries uncompressed, so real checkpoints are nowhere near it; a zip bomb's
 * 1 MB inflates to gigabytes). DPO_ZIP_MAX_INFLATE_MB overrides it.
 */
export function defaultInflateLimit(fileSize: number): number {
  const env = Number(process.env.DPO_ZIP_MAX_INFLATE_MB);
  if (Number.isFinite(env) && env > 0) return env * 2 ** 20;
  return Math.max(64 * 2 ** 20, 100 * fileSize);
}

export class ZipReader {
  readonly entries = new Map<string, ZipEntry>();
  readonly size: number;
  /** The most bytes one entry may inflate to. */
  readonly maxInflate: number;
  readonly #fd: number;

  constructor(readonly path: string, o: { maxInflate?: number } = {}) {
    this.#fd = openSync(path, 'r');
    try {
      this.size = fstatSync(this.#fd).size;
      this.maxInflate = o.maxInflate ?? defaultInflateLimit(this.size);
      this.#readDirectory();
    } catch (e) {
      closeSync(this.#fd);
      throw e;
    }
  }

  read(pos: number, len: number): Buffer {
    if (pos < 0 || pos + len > this.size) throw new ZipError(this.path, `read of ${len} bytes at ${pos} runs past the end of the file`);
    const buf = Buffer.alloc(len);
    const got = readSync(this.#fd, buf, 0, len, pos);
    if (got !== len) throw new ZipError(this.path, `short read at ${pos}`);
    return buf;
  }

  #readDirectory(): void {
    const tailLen = Math.min(this.size, 65535 + 22);
    const tail = this.read(this.size - tailLen, tailLen);
    let eocd = -1;
    for (let i = tail.length - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === 0x06054b50) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw new ZipError(this.path, 'not a zip file (no end-of-central-directory record)');
    let count = tail.readUInt16LE(eocd + 10);
    let dirSize = tail.readUInt32LE(eocd + 12);
    let dirOffset = tail.readUInt32LE(eocd + 16);
    // ZIP64: the locator sits right before the EOCD record.
    if (eocd >= 20 && tail.readUInt32LE(eocd - 20) === 0x07064b50) {
      const rec = Number(tail.readBigUInt64LE(eocd - 20 + 8));
      const z = this.read(rec, 56);
      if (z.readUInt32LE(0) !== 0x06064b50) throw new ZipError(this.path, 'bad ZIP64 end-of-central-directory record');
      count = Number(z.readBigUInt64LE(32));
      dirSize = Number(z.readBigUInt64LE(40));
      dirOffset = Number(z.readBigUInt64LE(48));
    }
    const dir = this.read(dirOffset, dirSize);
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > dir.length || dir.readUInt32LE(p) !== 0x02014b50) throw new ZipError(this.path, `corrupt central directory at entry ${i}`);
      const method = dir.readUInt16LE(p + 10);
      let compressedSize = dir.readUInt32LE(p + 20);
      let size = dir.readUInt32LE(p + 24);
      const nameLen = dir.readUInt16LE(p + 28);
      const extraLen = dir.readUInt16LE(p + 30);
      const commentLen = dir.readUInt16LE(p + 32);
      let localHeaderOffset = dir.readUInt32LE(p + 42);
      const name = dir.subarray(p + 46, p + 46 + nameLen).toString('utf8');
      // ZIP64 extra field (id 1): the 0xFFFFFFFF fields, in order size, compressed size, offset.
      let e = p + 46 + nameLen;
      const extraEnd = e + extraLen;
      while (e + 4 <= extraEnd) {
        const id = dir.readUInt16LE(e);
        const len = dir.readUInt16LE(e + 2);
        if (id === 1) {
          let q = e + 4;
          if (size === 0xffffffff) { size = Number(dir.readBigUInt64LE(q)); q += 8; }
          if (compressedSize === 0xffffffff) { compressedSize = Number(dir.readBigUInt64LE(q)); q += 8; }
          if (localHeaderOffset === 0xffffffff) { localHeaderOffset = Number(dir.readBigUInt64LE(q)); }
        }
        e += 4 + len;
      }
      this.entries.set(name, { name, method, compressedSize, size, localHeaderOffset });
      p = extraEnd + commentLen;
    }
  }

  /** Absolute file offset of an entry's data. */
  dataOffset(entry: ZipEntry): number {
    const h = this.read(entry.localHeaderOffset, 30);
    if (h.readUInt32LE(0) !== 0x04034b50) throw new ZipError(this.path, `corrupt local header for '${entry.name}'`);
    const start = entry.localHeaderOffset + 30 + h.readUInt16LE(26) + h.readUInt16LE(28);
    if (start + entry.compressedSize > this.size) throw new ZipError(this.path, `entry '${entry.name}' runs past the end of the file`);
    return start;
  }

  /** An entry's bytes (inflated if compressed). For small entries; tensors are mapped instead. */
  readEntry(name: string): Buffer {
    const entry = this.entries.get(name);
    if (!entry) throw new ZipError(this.path, `no entry '${name}'`);
    const raw = this.read(this.dataOffset(entry), entry.compressedSize);
    if (entry.method === 0) return raw;
    if (entry.method === 8) {
      // the declared size is checked before inflating, and the inflation itself is capped (a header can lie)
      const limit = this.maxInflate;
      const refuse = (size: string) => new ZipError(this.path, `entry '${name}' inflates to ${size}, more than the ${(limit / 2 ** 20).toFixed(0)} MiB allowed ` +
        `for a ${this.size}-byte file (a zip bomb?); DPO_ZIP_MAX_INFLATE_MB raises the limit`);
      if (entry.size > limit) throw refuse(`${entry.size} bytes`);
      try {
        return inflateRawSync(raw, { maxOutputLength: Math.max(1, Math.min(limit, entry.size || limit)) });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw refuse(`more than its declared ${entry.size} bytes`);
        throw new ZipError(this.path, `entry '${name}' does not inflate (${(e as Error).message})`);
      }
    }
    throw new ZipError(this.path, `entry '${name}' uses unsupported compression method ${entry.method}`);
  }

  close(): void {
    closeSync(this.#fd);
  }
}
