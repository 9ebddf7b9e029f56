import { describe, expect, it } from 'vitest';
import { BACKGROUND_NICE, BACKGROUND_SERVICES, DEFAULT_HEAP_MB, heapFlags, parseNice } from './service-process.ts';

describe('the services heap budget', () => {
  it('defaults to 96 MB of old space and 8 MB semi-spaces', () => {
    expect(DEFAULT_HEAP_MB).toBe(96);
    expect(heapFlags(undefined)).toEqual(['--max-old-space-size=96', '--max-semi-space-size=8']);
    expect(heapFlags('')).toEqual(['--max-old-space-size=96', '--max-semi-space-size=8']);
  });

  it('takes COUNTERSIGN_NODE_HEAP_MB', () => {
    expect(heapFlags('256')).toEqual(['--max-old-space-size=256', '--max-semi-space-size=8']);
  });

  it('refuses a budget that is not a whole number of megabytes, or too small to start', () => {
    for (const bad of ['abc', '12.5', '16', '-1']) {
      expect(() => heapFlags(bad)).toThrow(/COUNTERSIGN_NODE_HEAP_MB/);
    }
  });
});

describe('the background services CPU priority', () => {
  it('lowers the notifier to niceness 10 unless COUNTERSIGN_BACKGROUND_NICE says otherwise', () => {
    expect(BACKGROUND_SERVICES).toEqual(['notifier']);
    expect(BACKGROUND_NICE).toBe(10);
    expect(parseNice(undefined)).toBe(10);
    expect(parseNice('')).toBe(10);
    expect(parseNice('0')).toBe(0);
    expect(parseNice('19')).toBe(19);
  });

  it('refuses a niceness outside 0-19 or not a whole number', () => {
    for (const bad of ['-1', '20', '5.5', 'low']) {
      expect(() => parseNice(bad)).toThrow(/COUNTERSIGN_BACKGROUND_NICE/);
    }
  });
});
