// transformers' BasicTokenizer(do_lower_case=True), which CLIPTokenizer falls back to when ftfy is
// not installed: drop control characters, space out CJK ideographs, lower-case, strip accents,
// split off punctuation.

function isWhitespace(ch: string): boolean {
  return ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r' || /\p{Zs}/u.test(ch);
}
function isControl(ch: string): boolean {
  if (ch === '\t' || ch === '\n' || ch === '\r') return false;
  return /\p{C}/u.test(ch);
}
function isPunctuation(ch: string): boolean {
  const cp = ch.codePointAt(0)!;
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126)) return true;
  return /\p{P}/u.test(ch);
}
function isChinese(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

/** Python's str.split() with no argument: runs of whitespace (str.isspace) separate words. */
const PY_SPACE = /[\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;
function whitespaceTokenize(text: string): string[] {
  return text.split(PY_SPACE).filter((t) => t.length > 0);
}

export function basicTokenize(text: string): string[] {
  let cleaned = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (cp === 0 || cp === 0xfffd || isControl(ch)) continue;
    cleaned += isWhitespace(ch) ? ' ' : ch;
  }
  let spaced = '';
  for (const ch of cleaned) spaced += isChinese(ch.codePointAt(0)!) ? ` ${ch} ` : ch;
  const out: string[] = [];
  for (let token of whitespaceTokenize(spaced)) {
    token = token.toLowerCase().normalize('NFD').replace(/\p{Mn}/gu, '');
    let current = '';
    for (const ch of token) {
      if (isPunctuation(ch)) {
        if (current) out.push(current);
        out.push(ch);
        current = '';
      } else {
        current += ch;
      }
    }
    if (current) out.push(current);
  }
  return whitespaceTokenize(out.join(' '));
}

export { whitespaceTokenize };
