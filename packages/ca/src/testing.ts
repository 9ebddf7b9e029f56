/**
 * Test helpers. Exported as "@countersign/ca/testing" rather than from the
 * package index so production code cannot reach for them by accident.
 */
import { children, readTopLevel, TAG_BIT_STRING, TAG_SEQUENCE } from './der.ts';
import { decodeSinglePem, encodePem } from './pem.ts';

/**
 * Returns the CSR with one bit of its signature flipped. The last octet is
 * chosen because for ECDSA it is inside the integer s, so the result is still
 * well-formed DER and fails only at signature verification (what tests want).
 */
export function tamperCsrSignature(pem: string): string {
  const der = Buffer.from(decodeSinglePem(pem, 'CERTIFICATE REQUEST'));
  const top = readTopLevel(der, TAG_SEQUENCE);
  const sig = children(der, top)[2];
  if (sig === undefined || sig.tag !== TAG_BIT_STRING || sig.end - sig.contentStart < 2) {
    throw new Error('not a CSR with a signature');
  }
  der[sig.end - 1] = (der[sig.end - 1] ?? 0) ^ 0x01;
  return encodePem('CERTIFICATE REQUEST', der);
}
