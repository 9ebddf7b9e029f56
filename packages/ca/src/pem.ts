/**
 * PEM (RFC 7468) encoding and strict decoding.
 *
 * Decoding is strict because Buffer.from(..., 'base64') silently skips
 * characters it does not understand; for CSRs we would rather say "this is not
 * PEM" than parse whatever bytes fall out.
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

// Whitespace after the BEGIN line is optional so PEMs flattened onto one line
// (a common accident when pasting into JSON) still decode.
const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\s*([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export class PemError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PemError';
  }
}

/** Returns every PEM block in `text`, in order. Text outside blocks is ignored (RFC 7468 explanatory text). */
export function decodePemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const m of text.matchAll(BLOCK)) {
    const [, begin, body = '', end] = m;
    if (begin === undefined || begin !== end) {
      throw new PemError(`mismatched PEM labels "${begin}" and "${end}"`);
    }
    if (body.includes(':')) {
      // RFC 1421 headers (Proc-Type, DEK-Info) mean an encrypted/legacy block.
      throw new PemError(`PEM block "${begin}" has headers, which are not supported`);
    }
    const b64 = body.replace(/\s+/g, '');
    if (!BASE64.test(b64)) throw new PemError(`PEM block "${begin}" is not valid base64`);
    blocks.push({ label: begin, der: Buffer.from(b64, 'base64') });
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
