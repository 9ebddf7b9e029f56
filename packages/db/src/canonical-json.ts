import canonicalizeModule from 'canonicalize';

/**
 * RFC 8785 JSON canonicalization (the `canonicalize` package). The package is
 * CommonJS with an ES-style type declaration, so its export is normalized here once.
 */
type Canonicalize = (input: unknown) => string | undefined;
const loaded = canonicalizeModule as unknown as Canonicalize | { default: Canonicalize };
const canonicalize: Canonicalize = typeof loaded === 'function' ? loaded : loaded.default;

export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new Error('value has no JSON representation');
  return text;
}
