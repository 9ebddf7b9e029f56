/**
 * DNS name policy helpers. Pure functions, shared by CSR checking, the
 * approval policy and the CA itself (which refuses to encode a bad name even
 * if a caller forgot to check).
 */

const MAX_NAME_LENGTH = 253;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;
const ALL_DIGITS = /^[0-9]+$/;

/**
 * Canonical form for comparisons: trimmed, lower-case (DNS is
 * case-insensitive), and without the root dot, so "WWW.Example.COM." and
 * "www.example.com" compare equal. Does not validate.
 */
export function normalizeDnsName(name: string): string {
  let n = name.trim().toLowerCase();
  if (n.endsWith('.') && n.length > 1) n = n.slice(0, -1);
  return n;
}

/**
 * RFC 1123 host name, optionally with a single leading "*." wildcard label.
 * Expects the name without a trailing dot (use normalizeDnsName first).
 *
 * Beyond label syntax it rejects:
 * - an all-numeric last label, so "10.0.0.1" cannot sneak in as a DNS name
 *   (no TLD is all digits, RFC 3696 section 2);
 * - a wildcard directly above a single label ("*.com"): such a certificate
 *   would cover a whole TLD.
 * Single-label names ("localhost", "intranet") are allowed: this is a private CA.
 */
export function isValidDnsName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_NAME_LENGTH) return false;
  const labels = name.split('.');
  let start = 0;
  if (labels[0] === '*') {
    if (labels.length < 3) return false;
    start = 1;
  }
  for (let i = start; i < labels.length; i++) {
    const label = labels[i];
    if (label === undefined || !LABEL.test(label)) return false;
  }
  const last = labels[labels.length - 1];
  return last !== undefined && !ALL_DIGITS.test(last);
}

export function isWildcardName(name: string): boolean {
  return name.startsWith('*.');
}

/**
 * Whether `name` is permitted by an allow-list whose entries are exact names
 * or "*.example.com" patterns.
 *
 * A pattern matches exactly one extra label (a.example.com, not
 * a.b.example.com nor example.com), mirroring how TLS clients match wildcard
 * certificates. A requested wildcard is only allowed by the identical pattern:
 * "*.example.com" in the list does not grant "*.sub.example.com", and an
 * exact entry never grants a wildcard.
 */
export function domainAllowed(name: string, allowed: readonly string[]): boolean {
  const n = normalizeDnsName(name);
  if (!isValidDnsName(n)) return false;
  const requestedWildcard = isWildcardName(n);
  for (const entry of allowed) {
    const e = normalizeDnsName(entry);
    if (!isValidDnsName(e)) continue;
    if (e === n) return true;
    if (requestedWildcard || !isWildcardName(e)) continue;
    const suffix = e.slice(1); // ".example.com"
    if (n.length > suffix.length && n.endsWith(suffix)) {
      const head = n.slice(0, n.length - suffix.length);
      if (!head.includes('.')) return true;
    }
  }
  return false;
}
