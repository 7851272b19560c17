// The text repairs of ftfy 6 (`ftfy.fix_text` with its default config) that CLIPTokenizer applies
// when ftfy is installed, as the reference's requirements.txt has it. Ported from ftfy's
// documented steps, applied per line and repeated until nothing changes:
//   unescape HTML entities ("auto": only in text without '<'), fix mojibake, C1 controls,
//   Latin ligatures, full-width characters, curly quotes, line breaks, terminal escapes,
//   control characters, then NFC.
// Encoding repair is ftfy's common case only: text that is UTF-8 decoded as Windows-1252 or
// Latin-1 ("cafÃ©", "donâ€™t"), detected by its tell-tale character pairs and re-decoded when
// the whole line then forms valid UTF-8. ftfy's broader heuristics (other legacy code pages,
// partially mixed lines) are not reproduced.

/** Windows-1252's 0x80-0x9F (undefined bytes map to the same-numbered C1 control, as ftfy's "sloppy" codec). */
const CP1252_HIGH = [
  0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021, 0x2c6, 0x2030, 0x160, 0x2039, 0x152, 0x8d, 0x17d, 0x8f,
  0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x2dc, 0x2122, 0x161, 0x203a, 0x153, 0x9d, 0x17e, 0x178,
];
const CP1252_ENCODE = new Map<number, number>();
for (let b = 0; b < 256; b++) CP1252_ENCODE.set(b >= 0x80 && b < 0xa0 ? CP1252_HIGH[b - 0x80]! : b, b);

/** Bytes of `text` in sloppy Windows-1252, or null if a character has no byte there. */
function encodeSloppy1252(text: string): Uint8Array | null {
  const out = new Uint8Array(text.length);
  let i = 0;
  for (const ch of text) {
    const b = CP1252_ENCODE.get(ch.codePointAt(0)!);
    if (b === undefined) return null;
    out[i++] = b;
  }
  return out.subarray(0, i);
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

// A UTF-8 lead byte read as cp1252/latin-1 (Â-ô) followed by a continuation byte read the same way
// (0x80-0xBF: cp1252 punctuation or Latin-1 symbols): the signature of mojibake.
const MOJIBAKE = /[\u00c2-\u00f4][\u0080-\u00bf\u20ac\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u017d\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u017e\u0178]/u;

function fixEncoding(text: string): string {
  if (!MOJIBAKE.test(text)) return text;
  const bytes = encodeSloppy1252(text);
  if (!bytes) return text;
  try {
    return UTF8.decode(bytes);
  } catch {
    return text;
  }
}

/** C1 control characters are almost always Windows-1252 bytes decoded as Latin-1. */
function fixC1Controls(text: string): string {
  return text.replace(/[\u0080-\u009f]/g, (c) => String.fromCodePoint(CP1252_HIGH[c.charCodeAt(0) - 0x80]!));
}

const LIGATURES: Record<string, string> = {
  '\u0132': 'IJ', '\u0133': 'ij', '\u0149': '\u02bcn', '\u01c4': 'D\u017d', '\u01c5': 'D\u017e', '\u01c6': 'd\u017e',
  '\u01c7': 'LJ', '\u01c8': 'Lj', '\u01c9': 'lj', '\u01ca': 'NJ', '\u01cb': 'Nj', '\u01cc': 'nj', '\u01f1': 'DZ',
  '\u01f2': 'Dz', '\u01f3': 'dz', '\ufb00': 'ff', '\ufb01': 'fi', '\ufb02': 'fl', '\ufb03': 'ffi', '\ufb04': 'ffl',
  '\ufb05': '\u017ft', '\ufb06': 'st',
};
const LIGATURE_RE = new RegExp(`[${Object.keys(LIGATURES).join('')}]`, 'g');

/** Full-width forms (U+FF01-U+FFEF) to their NFKC equivalents, and the ideographic space to a space. */
function fixCharacterWidth(text: string): string {
  return text.replace(/[\u3000\uff01-\uffef]/g, (c) => (c === '\u3000' ? ' ' : c.normalize('NFKC')));
}

function uncurlQuotes(text: string): string {
  return text.replace(/[\u02bc\u2018-\u201b]/g, "'").replace(/[\u201c-\u201f]/g, '"');
}

function fixLineBreaks(text: string): string {
  return text.replace(/\r\n|[\r\u2028\u2029\u0085]/g, '\n');
}

function removeTerminalEscapes(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u001b\[((?:\d|;)*)([a-zA-Z])/g, '');
}

// ftfy's control characters: C0 but tab/newlines, DEL, deprecated format characters, the BOM,
// interlinear annotation characters. Zero-width spaces and soft hyphens are kept.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b\u000e-\u001f\u007f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;

const NAMED_ENTITIES: Record<string, string> = {
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0', copy: '\u00a9', reg: '\u00ae', trade: '\u2122',
  hellip: '\u2026', mdash: '\u2014', ndash: '\u2013', lsquo: '\u2018', rsquo: '\u2019', ldquo: '\u201c', rdquo: '\u201d',
  eacute: '\u00e9', egrave: '\u00e8', aacute: '\u00e1', agrave: '\u00e0', ouml: '\u00f6', uuml: '\u00fc', auml: '\u00e4',
  szlig: '\u00df', ccedil: '\u00e7', deg: '\u00b0', times: '\u00d7', euro: '\u20ac', pound: '\u00a3', yen: '\u00a5',
  cent: '\u00a2', sect: '\u00a7', para: '\u00b6', middot: '\u00b7', laquo: '\u00ab', raquo: '\u00bb', bull: '\u2022',
};

/** HTML entities with a terminating semicolon (ftfy's HTML_ENTITY_RE), numeric or named. */
function unescapeHtml(text: string): string {
  return text.replace(/&#?[0-9A-Za-z]{1,24};/g, (m) => {
    const body = m.slice(1, -1);
    if (body.startsWith('#')) {
      const code = body[1] === 'x' || body[1] === 'X' ? Number.parseInt(body.slice(2), 16) : Number.parseInt(body.slice(1), 10);
      if (!Number.isFinite(code) || code < 0 || code > 0x10ffff) return m;
      // numeric references to C1 positions mean Windows-1252, as browsers (and html.unescape) read them
      if (code >= 0x80 && code < 0xa0) return String.fromCodePoint(CP1252_HIGH[code - 0x80]!);
      return String.fromCodePoint(code);
    }
    return NAMED_ENTITIES[body] ?? NAMED_ENTITIES[body.toLowerCase()] ?? m;
  });
}

function fixLine(line: string): string {
  const unescape = !line.includes('<');
  let text = line;
  for (let round = 0; round < 16; round++) {
    const orig = text;
    if (unescape) text = unescapeHtml(text);
    text = fixEncoding(text);
    text = fixC1Controls(text);
    text = text.replace(LIGATURE_RE, (c) => LIGATURES[c]!);
    text = fixCharacterWidth(text);
    text = uncurlQuotes(text);
    text = fixLineBreaks(text);
    text = removeTerminalEscapes(text);
    text = text.replace(CONTROL, '');
    text = text.normalize('NFC');
    if (text === orig) break;
  }
  return text;
}

/** ftfy.fix_text: each line (keeping its line break) is fixed on its own. */
export function fixText(text: string): string {
  const lines = text.match(/[^\n]*\n|[^\n]+$/g) ?? [''];
  return lines.map(fixLine).join('');
}
