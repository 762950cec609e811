import { describe, expect, it } from 'vitest';
import { compressedEntry, compressedHostClusters, decodeL2 } from '../../../src/block/qcow2/entries.js';

describe('compressed cluster descriptors', () => {
  it.each([9, 10, 12, 16, 21])('round-trip through decodeL2 with %i cluster bits, covering every byte', (bits) => {
    const cs = 2 ** bits;
    for (const [offset, length] of [[cs * 3, 1], [cs * 5 + 511, 2], [cs * 7 + 100, Math.max(1, cs - 612)], [cs * 9 + 513, 512]] as const) {
      const m = decodeL2(compressedEntry(offset, length, bits), bits, 3);
      expect(m.kind).toBe('compressed');
      if (m.kind !== 'compressed') continue;
      expect(m.hostOffset).toBe(offset);
      expect(m.maxBytes).toBeGreaterThanOrEqual(length); // whole sectors from the offset on
      expect(m.maxBytes - length).toBeLessThan(512);
      expect(compressedHostClusters(m, bits)).toEqual(
        [...new Set([Math.floor(offset / cs), Math.floor((offset + m.maxBytes - 1) / cs)])],
      );
    }
  });

  it('refuses what an L2 entry cannot hold', () => {
    expect(() => compressedEntry(2 ** 61, 100, 9)).toThrow(RangeError); // 61 offset bits at 512-byte clusters
    expect(() => compressedEntry(0, 3 * 512, 9)).toThrow(RangeError); // one sector-count bit: 2 sectors at most
  });
});
