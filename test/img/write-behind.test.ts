import { describe, expect, it } from 'vitest';
import { WriteBehind } from '../../src/img/write-behind.js';

const tick = () => new Promise<void>((r) => setTimeout(r, 1));

describe('WriteBehind', () => {
  it('never hands out a buffer while a write of it is in flight, and keeps writes in order', async () => {
    const copier = new WriteBehind(16);
    const inFlight = new Set<ArrayBufferLike>();
    const written: number[] = [];
    for (let chunk = 0; chunk < 20; chunk++) {
      const buf = copier.buffer(8);
      expect(inFlight.has(buf.buffer)).toBe(false);
      buf.fill(chunk);
      // Some chunks need no buffer at all (zero ranges): they must not break the alternation.
      if (chunk % 3 === 2) {
        await copier.submit(async () => { await tick(); written.push(-chunk); });
        continue;
      }
      await copier.submit(async () => {
        inFlight.add(buf.buffer);
        await tick();
        expect(buf.every((b) => b === chunk)).toBe(true); // not refilled meanwhile
        written.push(chunk);
        inFlight.delete(buf.buffer);
      });
    }
    await copier.drain();
    expect(written.map(Math.abs)).toEqual([...Array(20).keys()]);
  });

  it('reports a failed write at the next submit, and at drain', async () => {
    const copier = new WriteBehind(8);
    await copier.submit(() => Promise.reject(new Error('disk full')));
    await expect(copier.submit(async () => {})).rejects.toThrow('disk full');

    const last = new WriteBehind(8);
    await last.submit(() => Promise.reject(new Error('EIO')));
    await expect(last.drain()).rejects.toThrow('EIO');
  });
});
