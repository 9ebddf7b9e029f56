import { describe, expect, it } from 'vitest';
import { ByteSink, writeCanonicalJsonb, writeJsonString } from './audit-canonical.ts';
import { canonicalJson } from './canonical-json.ts';

/**
 * The fast canonicaliser must agree byte for byte with canonicalize(JSON.parse)
 * on the text PostgreSQL renders for jsonb: keys sorted by length then bytes,
 * ", " and ": " separators, numbers as decimal text.
 */
function jsonbText(v: unknown, numberForm: (n: number) => string = (n) => JSON.stringify(n)): string {
  if (typeof v === 'number') return numberForm(v);
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map((x) => jsonbText(x, numberForm)).join(', ')}]`;
  const entries = Object.entries(v as Record<string, unknown>).sort(([a], [b]) => {
    const ba = Buffer.from(a);
    const bb = Buffer.from(b);
    return ba.length - bb.length || Buffer.compare(ba, bb);
  });
  return `{${entries.map(([k, x]) => `${JSON.stringify(k)}: ${jsonbText(x, numberForm)}`).join(', ')}}`;
}

function fast(text: string): string {
  const src = Buffer.from(text, 'utf8');
  const out = new ByteSink(8);
  writeCanonicalJsonb(src, 0, src.length, out);
  return out.buf.toString('utf8', 0, out.pos);
}

/** numeric renders exponents as plain decimals. */
const decimalForm = (n: number): string => {
  if (Object.is(n, -0)) return '0';
  const s = JSON.stringify(n);
  if (!/e/i.test(s)) return s;
  const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
  if (!m) throw new Error(`unexpected ${s}`);
  const digits = `${m[2]}${m[3] ?? ''}`;
  const point = 1 + Number(m[4]);
  const body =
    point <= 0
      ? `0.${'0'.repeat(-point)}${digits}`
      : point >= digits.length
        ? `${digits}${'0'.repeat(point - digits.length)}`
        : `${digits.slice(0, point)}.${digits.slice(point)}`;
  return `${m[1]}${body}`;
};

let seed = 42;
const rnd = () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
  return seed / 2_147_483_648;
};
const KEY_CHARS = ['a', 'b', 'Z', '_', '1', 'é', '\u00ff', '\ue000', '😀', '"', '\\', '\n', ' ', 'ß'];
const randomKey = () =>
  Array.from({ length: 1 + Math.floor(rnd() * 5) }, () => KEY_CHARS[Math.floor(rnd() * KEY_CHARS.length)]).join('');
function randomValue(depth: number): unknown {
  const r = rnd();
  if (depth > 3 || r < 0.45) {
    const s = rnd();
    if (s < 0.2) return Math.floor(rnd() * 1e6) - 5e5;
    if (s < 0.3) return (rnd() - 0.5) * 10 ** Math.floor(rnd() * 40 - 20);
    if (s < 0.35) return [true, false, null][Math.floor(rnd() * 3)];
    if (s < 0.4) return 2 ** 53 + Math.floor(rnd() * 1000);
    return Array.from({ length: Math.floor(rnd() * 8) }, () => KEY_CHARS[Math.floor(rnd() * KEY_CHARS.length)]).join(
      '',
    );
  }
  if (r < 0.7) return Array.from({ length: Math.floor(rnd() * 4) }, () => randomValue(depth + 1));
  const o: Record<string, unknown> = {};
  for (let i = Math.floor(rnd() * 6); i > 0; i--) o[randomKey()] = randomValue(depth + 1);
  return o;
}

describe('writeCanonicalJsonb', () => {
  it.each([
    '{}',
    '[]',
    '{"b": 1, "a": [1, 2, {"d": null, "c": true}]}',
    '{"note": "looks right to me", "state": "pending", "votes": 1, "approvals_required": 2}',
    '{"x": 1.0, "y": 0.0000001, "z": 1000000000000000000000, "w": -0, "v": 1234567890123456789}',
    '{"\\u0001": "\\b\\f\\n\\r\\t\\"\\\\", "a": "\\u001f"}',
    '"just a string"',
    '12',
  ])('canonicalises %s', (text) => {
    expect(fast(text)).toBe(canonicalJson(JSON.parse(text)));
  });

  it('orders keys by UTF-16 code units, not UTF-8 bytes', () => {
    // U+E000 sorts after U+1F600 in UTF-8 but before it in UTF-16 (surrogates are 0xD8xx).
    const v = { '\ue000': 1, '😀': 2, é: 3, z: 4, 'a"b': 5, 'a\\b': 6, ab: 7 };
    expect(fast(jsonbText(v))).toBe(canonicalJson(v));
  });

  it('agrees with canonicalize on 2,000 random values in jsonb rendering', () => {
    for (let i = 0; i < 2000; i++) {
      const v = randomValue(0);
      expect(fast(jsonbText(v))).toBe(canonicalJson(v));
      expect(fast(jsonbText(v, decimalForm))).toBe(canonicalJson(v));
    }
  });

  it('canonicalises escapes JSON.stringify would not write (json text stored by hand)', () => {
    for (const text of [
      '{"k": "\\u0041\\u00e9"}',
      '{"k": "a\\/b"}',
      '{"k": "\\u000A\\u001F"}',
      '{"\\u0062": 1, "a": 2}',
      '{"k": "\\ud83d\\ude00"}',
      '{"k": ["\\u0009", "\\u0008"]}',
    ]) {
      expect(fast(text)).toBe(canonicalJson(JSON.parse(text)));
    }
    // The escapes JSON.stringify does write stay as they are.
    expect(fast('{"k": "\\u0001\\n\\"\\\\"}')).toBe('{"k":"\\u0001\\n\\"\\\\"}');
  });

  it('refuses what cannot be canonical JSON', () => {
    expect(() => fast('{"a": 1e400}')).toThrow();
    expect(() => fast('{"a": nope}')).toThrow();
    expect(() => fast('{"a": "unterminated')).toThrow();
  });
});

describe('writeJsonString', () => {
  it.each([
    'plain',
    'with "quotes" and \\ backslash',
    'tab\there',
    'é 😀',
    '',
  ])('escapes %j like JSON.stringify', (s) => {
    const src = Buffer.from(s);
    const out = new ByteSink(4);
    writeJsonString(src, 0, src.length, out);
    expect(out.buf.toString('utf8', 0, out.pos)).toBe(JSON.stringify(s));
  });
});
