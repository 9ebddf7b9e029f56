import { describe, expect, it } from 'vitest';
import { domainAllowed, isValidDnsName, normalizeDnsName } from './dns-names.ts';

describe('normalizeDnsName', () => {
  it.each([
    ['WWW.Example.COM', 'www.example.com'],
    ['  a.example.com.  ', 'a.example.com'],
    ['*.Example.com', '*.example.com'],
  ])('%j -> %j', (input, expected) => {
    expect(normalizeDnsName(input)).toBe(expected);
  });
});

describe('isValidDnsName', () => {
  it.each([
    ['example.com', true],
    ['a.b.c.example.com', true],
    ['xn--bcher-kva.example', true],
    ['a-b.example.com', true],
    ['localhost', true],
    ['*.example.com', true],
    ['*.a.example.com', true],
    ['1.2.3.example.com', true],
    ['', false],
    ['*.com', false],
    ['*', false],
    ['a.*.example.com', false],
    ['*a.example.com', false],
    ['foo*.example.com', false],
    ['-a.example.com', false],
    ['a-.example.com', false],
    ['a..example.com', false],
    ['.example.com', false],
    ['example.com.', false],
    ['under_score.example.com', false],
    ['exa mple.com', false],
    ['bücher.example', false],
    ['10.0.0.1', false],
    [`${'a'.repeat(64)}.example.com`, false],
    [`${'a'.repeat(63)}.example.com`, true],
  ])('%j -> %s', (name, expected) => {
    expect(isValidDnsName(name)).toBe(expected);
  });

  it('enforces the 253 character limit', () => {
    const label = 'a'.repeat(63);
    const name253 = [label, label, label, 'b'.repeat(61)].join('.');
    expect(name253).toHaveLength(253);
    expect(isValidDnsName(name253)).toBe(true);
    expect(isValidDnsName(`x${name253}`)).toBe(false);
  });
});

describe('domainAllowed', () => {
  const allowed = ['*.example.com', 'exact.example.org', 'Upper.Example.NET'];
  it.each([
    ['a.example.com', true],
    ['A.EXAMPLE.COM.', true],
    ['a.b.example.com', false],
    ['example.com', false],
    ['*.example.com', true],
    ['*.b.example.com', false],
    ['aexample.com', false],
    ['a.example.com.evil.net', false],
    ['exact.example.org', true],
    ['a.exact.example.org', false],
    ['*.exact.example.org', false],
    ['upper.example.net', true],
    ['other.example.org', false],
    ['', false],
    ['bad_name.example.com', false],
  ])('%j -> %s', (name, expected) => {
    expect(domainAllowed(name, allowed)).toBe(expected);
  });

  it('an exact entry never grants a wildcard, and an empty list grants nothing', () => {
    expect(domainAllowed('*.example.org', ['example.org', 'a.example.org'])).toBe(false);
    expect(domainAllowed('example.com', [])).toBe(false);
  });
});
