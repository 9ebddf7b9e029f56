import { describe, expect, it } from 'vitest';
import { DEFAULT_HEAP_MB, heapFlags } from './service-process.ts';

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
