import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from './durations.ts';

describe('durations', () => {
  it.each([
    ['168h', 168 * 3_600_000],
    ['24h', 86_400_000],
    ['90s', 90_000],
    ['15m', 900_000],
    ['7d', 604_800_000],
    ['500ms', 500],
    ['30', 30_000],
    ['1.5s', 1_500],
  ])('parses %s', (input, ms) => expect(parseDuration(input)).toBe(ms));

  it.each(['', 'soon', '10x', '-5s', 'h'])('refuses %j', (input) => expect(parseDuration(input)).toBeNull());

  it('formats in the largest whole unit', () => {
    expect(formatDuration(604_800_000)).toBe('7d');
    expect(formatDuration(3_600_000)).toBe('1h');
    expect(formatDuration(90_000)).toBe('90s');
    expect(formatDuration(1_500)).toBe('1500ms');
  });
});
