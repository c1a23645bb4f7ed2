/**
 * File names are bytes; JavaScript strings are UTF-16. A name that is not valid UTF-8 (Latin-1 archives,
 * old cameras' memory cards) would turn into U+FFFD on decoding and then name a file that does not exist.
 * So names read from the file system or a path list are decoded the way Python's os.fsdecode does
 * ("surrogateescape"): every byte that is not part of a valid UTF-8 sequence becomes the lone surrogate
 * U+DC80–U+DCFF, one per byte, and fsPath turns such a string back into the exact bytes to open. JSON output
 * then shows "\udcNN", which Python's json with surrogateescape reads back to the same bytes; CSV and text
 * outputs use displayPath, which writes each such byte as \xNN (Python's "backslashreplace").
 */

/** Length of the valid UTF-8 sequence starting at b[i] (no overlong forms, surrogates or values past U+10FFFF), or 0. */
function sequenceLength(b: Uint8Array, i: number): number {
  const c = b[i];
  const cont = (k: number) => i + k < b.length && (b[i + k] & 0xc0) === 0x80;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    const c1 = b[i + 1];
    if (c === 0xe0 && c1 < 0xa0) return 0; // overlong
    if (c === 0xed && c1 >= 0xa0) return 0; // U+D800–U+DFFF
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    const c1 = b[i + 1];
    if (c === 0xf0 && c1 < 0x90) return 0; // overlong
    if (c === 0xf4 && c1 >= 0x90) return 0; // past U+10FFFF
    return 4;
  }
  return 0;
}

const utf8 = new TextDecoder('utf-8');

/** Bytes of a name or path → a string, invalid bytes as U+DC80–U+DCFF (Python's surrogateescape). */
export function decodeFsName(b: Uint8Array): string {
  let out = '';
  let run = 0; // start of the current run of valid sequences, decoded in one go
  let i = 0;
  while (i < b.length) {
    const n = sequenceLength(b, i);
    if (n > 0) {
      i += n;
      continue;
    }
    out += utf8.decode(b.subarray(run, i)) + String.fromCharCode(0xdc00 + b[i]);
    i++;
    run = i;
  }
  return run === 0 ? utf8.decode(b) : out + utf8.decode(b.subarray(run));
}

/** A lone low surrogate of the escape range: not preceded by a high surrogate. */
function isEscape(s: string, i: number): boolean {
  const c = s.charCodeAt(i);
  if (c < 0xdc80 || c > 0xdcff) return false;
  const prev = i > 0 ? s.charCodeAt(i - 1) : 0;
  return !(prev >= 0xd800 && prev <= 0xdbff);
}

function hasEscapes(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (isEscape(s, i)) return true;
  return false;
}

/**
 * What to hand the file system for a path string: the string itself when it is plain text, else the exact
 * bytes (each escape back to its byte, everything else UTF-8). Node takes both wherever it takes a path.
 */
export function fsPath(p: string): string | Buffer {
  if (!hasEscapes(p)) return p;
  const parts: Buffer[] = [];
  let run = 0;
  for (let i = 0; i < p.length; i++) {
    if (!isEscape(p, i)) continue;
    parts.push(Buffer.from(p.slice(run, i), 'utf8'), Buffer.of(p.charCodeAt(i) - 0xdc00));
    run = i + 1;
  }
  parts.push(Buffer.from(p.slice(run), 'utf8'));
  return Buffer.concat(parts);
}

/** The bytes of a path string (see fsPath): for hashing and byte-order sorting. */
export function pathBytes(p: string): Buffer {
  const f = fsPath(p);
  return typeof f === 'string' ? Buffer.from(f, 'utf8') : f;
}

/**
 * A path for text outputs (CSV rows, paths.txt): each byte that is not UTF-8 written as \xNN, lower-case hex,
 * as Python's "backslashreplace" writes it; every other path unchanged.
 */
export function displayPath(p: string): string {
  if (!hasEscapes(p)) return p;
  let out = '';
  for (let i = 0; i < p.length; i++) {
    out += isEscape(p, i) ? `\\x${(p.charCodeAt(i) - 0xdc00).toString(16).padStart(2, '0')}` : p[i];
  }
  return out;
}

/**
 * displayPath read back: each \x80–\xff becomes its escape again, so a stored CSV or paths.txt row is known
 * for the input it came from. (A name that really holds a backslash, "x" and two such hex digits is read as
 * the escaped byte; that is the price of the readable form Python's backslashreplace also pays.)
 */
export function undisplayPath(s: string): string {
  return s.includes('\\x') ? s.replace(/\\x([89a-f][0-9a-f])/g, (_, h: string) => String.fromCharCode(0xdc00 + parseInt(h, 16))) : s;
}
