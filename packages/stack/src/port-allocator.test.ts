import { describe, expect, it } from 'vitest';
import { portAllocator } from './port-allocator.ts';

const picker = (ports: number[]) => {
  let i = 0;
  return async () => ports[i++ % ports.length] as number;
};

describe('portAllocator', () => {
  it('never hands out a port twice, even when the kernel offers it again', async () => {
    const ports = portAllocator(picker([40915, 40915, 40915, 41000, 40915, 41000, 42000]));
    expect([await ports.next(), await ports.next(), await ports.next()]).toEqual([40915, 41000, 42000]);
  });

  it('skips a port reserved by the caller', async () => {
    const ports = portAllocator(picker([8080, 8080, 9000]));
    ports.reserve(8080);
    expect(await ports.next()).toBe(9000);
  });

  it('fails clearly when no distinct port comes', async () => {
    const ports = portAllocator(picker([5000]), 3);
    expect(await ports.next()).toBe(5000);
    await expect(ports.next()).rejects.toThrow(/no free loopback port distinct from 5000 after 3 attempts/);
  });

  it('gives distinct real ports from the kernel', async () => {
    const ports = portAllocator();
    const got = await Promise.all(Array.from({ length: 20 }, () => ports.next()));
    expect(new Set(got).size).toBe(20);
  });
});
