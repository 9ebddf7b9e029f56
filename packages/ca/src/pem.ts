/**
 * PEM (RFC 7468) encoding and strict decoding.
 *
 * Decoding is strict because Buffer.from(..., 'base64') silently skips
 * characters it does not understand; for CSRs we would rather say "this is not
 * PEM" than parse whatever bytes fall out.
 *
 * Decoding is one forward pass (indexOf and character loops, no backtracking
 * regular expression): PEM text arrives from anyone who can send a request, so
 * its cost must stay linear in its length. The lazy block regex this replaces
 * (`-----BEGIN (L)-----\s*([\s\S]*?)-----END (L)-----` with matchAll) was
 * quadratic: a BEGIN line followed by 64 KiB of spaces cost 0.6-2.2 s, and 64 KiB
 * of BEGIN lines without an END 0.2 s (pem.test.ts). The accepted language is
 * unchanged; pem.test.ts checks it against that regex.
 */

export interface PemBlock {
  readonly label: string;
  readonly der: Buffer;
}

export function encodePem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.length).toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += 64) body += `${b64.slice(i, i + 64)}\n`;
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

const BEGIN = '-----BEGIN ';
const END = '-----END ';
const DASHES = '-----';
const SPACE = /\s+/g;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export class PemError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PemError';
  }
}

/** A label character: [A-Z0-9 ]. */
function isLabelChar(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x20;
}

/**
 * The label of `-----BEGIN LABEL-----` / `-----END LABEL-----` whose keyword ends
 * at `from`: the whole run of label characters there, non-empty and closed by
 * five dashes (a run cannot end early, since no label character is a dash).
 * Returns the offset after the closing dashes, or -1.
 */
function readLabel(text: string, from: number): number {
  let i = from;
  while (i < text.length && isLabelChar(text.charCodeAt(i))) i++;
  return i > from && text.startsWith(DASHES, i) ? i : -1;
}

/** The first END line at or after `from`, or null. */
function findEnd(text: string, from: number): { start: number; label: string; next: number } | null {
  let at = text.indexOf(END, from);
  while (at !== -1) {
    const labelStart = at + END.length;
    const labelEnd = readLabel(text, labelStart);
    if (labelEnd !== -1) {
      return { start: at, label: text.slice(labelStart, labelEnd), next: labelEnd + DASHES.length };
    }
    // Not an END line; the next candidate starts past this "-----END " (it holds no five dashes).
    at = text.indexOf(END, at + 1);
  }
  return null;
}

/** Returns every PEM block in `text`, in order. Text outside blocks is ignored (RFC 7468 explanatory text). */
export function decodePemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  let pos = 0;
  for (;;) {
    const begin = text.indexOf(BEGIN, pos);
    if (begin === -1) break;
    const labelStart = begin + BEGIN.length;
    const labelEnd = readLabel(text, labelStart);
    if (labelEnd === -1) {
      // Not a BEGIN line: look for the next one. The label run holds no dash, so nothing is scanned twice.
      pos = begin + 1;
      continue;
    }
    const label = text.slice(labelStart, labelEnd);
    // No line break is required anywhere, so PEMs flattened onto one line (a
    // common accident when pasting into JSON) still decode: whitespace in the
    // body is dropped before the base64 check.
    const bodyStart = labelEnd + DASHES.length;
    const end = findEnd(text, bodyStart);
    // No END after this BEGIN means none after any later BEGIN either: the rest is explanatory text.
    if (end === null) break;
    if (label !== end.label) throw new PemError(`mismatched PEM labels "${label}" and "${end.label}"`);
    const body = text.slice(bodyStart, end.start);
    if (body.includes(':')) {
      // RFC 1421 headers (Proc-Type, DEK-Info) mean an encrypted/legacy block.
      throw new PemError(`PEM block "${label}" has headers, which are not supported`);
    }
    const b64 = body.replace(SPACE, '');
    if (!BASE64.test(b64)) throw new PemError(`PEM block "${label}" is not valid base64`);
    blocks.push({ label, der: Buffer.from(b64, 'base64') });
    pos = end.next;
  }
  return blocks;
}

/** Exactly one block with the given label, or a PemError explaining what was found instead. */
export function decodeSinglePem(text: string, label: string): Buffer {
  const blocks = decodePemBlocks(text);
  if (blocks.length === 0) throw new PemError(`expected a PEM ${label}, found no PEM block`);
  const matching = blocks.filter((b) => b.label === label);
  const first = matching[0];
  if (first === undefined) {
    throw new PemError(`expected a PEM ${label}, found ${blocks.map((b) => b.label).join(', ')}`);
  }
  if (matching.length > 1) throw new PemError(`expected one PEM ${label}, found ${matching.length}`);
  return first.der;
}
