// PNG text chunks (tEXt for Latin-1, iTXt for other text), so generated images carry their prompt, seed, model
// and settings the way other diffusion tools write them.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const typeAndData = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typeAndData));
  return Buffer.concat([len, typeAndData, crc]);
}

/**
 * Inserts text chunks right after IHDR: tEXt when the value is Latin-1, else iTXt (UTF-8,
 * uncompressed), so any prompt survives exactly.
 */
export function addPngText(png: Buffer, entries: Record<string, string>): Buffer {
  if (png.length < 16 || png.readUInt32BE(12) !== 0x49484452) throw new Error('not a PNG (no IHDR first)');
  const ihdrEnd = 8 + 12 + png.readUInt32BE(8);
  const chunks = Object.entries(entries).map(([k, v]) => {
    if (!/^[\x20-\x7e\xa1-\xff]{1,79}$/.test(k)) throw new Error(`PNG text key '${k}': 1-79 Latin-1 characters`);
    const key = Buffer.from(k, 'latin1');
    if (/^[\n\x20-\x7e\xa0-\xff]*$/.test(v)) return chunk('tEXt', Buffer.concat([key, Buffer.from([0]), Buffer.from(v, 'latin1')]));
    // iTXt: keyword 0 compression-flag compression-method language-tag 0 translated-keyword 0 text
    return chunk('iTXt', Buffer.concat([key, Buffer.from([0, 0, 0, 0, 0]), Buffer.from(v, 'utf8')]));
  });
  return Buffer.concat([png.subarray(0, ihdrEnd), ...chunks, png.subarray(ihdrEnd)]);
}

/** The tEXt and uncompressed iTXt chunks of a PNG (for tests and tools). */
export function readPngText(png: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let p = 8;
  while (p + 8 <= png.length) {
    const len = png.readUInt32BE(p);
    const type = png.toString('latin1', p + 4, p + 8);
    if (type === 'tEXt') {
      const data = png.subarray(p + 8, p + 8 + len);
      const zero = data.indexOf(0);
      out[data.toString('latin1', 0, zero)] = data.toString('latin1', zero + 1);
    } else if (type === 'iTXt') {
      const data = png.subarray(p + 8, p + 8 + len);
      const zero = data.indexOf(0);
      if (data[zero + 1] === 0) {
        const langEnd = data.indexOf(0, zero + 3);
        const textStart = data.indexOf(0, langEnd + 1) + 1;
        out[data.toString('latin1', 0, zero)] = data.toString('utf8', textStart);
      }
    }
    p += 12 + len;
  }
  return out;
}
