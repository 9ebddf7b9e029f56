import { describe, expect, it } from 'vitest';
import { generateApiKey, parseApiKey } from './api-keys.ts';

describe('API keys', () => {
  it('generates a key whose id parses back and whose hash is not the secret', () => {
    const k = generateApiKey();
    const parsed = parseApiKey(k.token);
    expect(parsed?.id).toBe(k.id);
    expect(k.secretHash).toHaveLength(32);
    expect(k.token).not.toContain(k.secretHash.toString('hex'));
    expect(generateApiKey().token).not.toBe(k.token);
  });

  it.each([
    '',
    'Bearer x',
    'cs_123_abc',
    `cs_${'g'.repeat(32)}_${'a'.repeat(43)}`,
    `cs_${'a'.repeat(32)}_${'a'.repeat(42)}`,
  ])('refuses malformed key %j', (token) => expect(parseApiKey(token)).toBeNull());
});
