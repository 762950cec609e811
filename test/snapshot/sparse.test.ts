import { randomBytes } from 'node:crypto';
import { open, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  PageDigest, dataExtentsOf, nonZeroRuns, normalizeExtents, verifyRegionFile, writeRegionFile, type ChecksumAlgorithm,
} from '../../src/snapshot/sparse.js';
import { MiB, PAGE, nonZeroPageBytes, patternedRam, tempRoot } from './helpers.js';

let root: string;
beforeAll(async () => { root = await tempRoot(); });
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

describe('nonZeroRuns', () => {
  it('finds maximal non-zero page runs, including a page whose only set byte is its last', () => {
    const ram = new Uint8Array(64 * PAGE);
    ram.fill(1, 0, PAGE); // page 0
    ram.fill(2, 16 * PAGE + 100, 19 * PAGE); // pages 16..18, straddling the 64 KiB stride
    ram[40 * PAGE + PAGE - 1] = 7; // page 40, last byte only
    ram[63 * PAGE] = 1; // final page
    expect([...nonZeroRuns(ram, 0, ram.length)]).toEqual([
      [0, PAGE], [16 * PAGE, 3 * PAGE], [40 * PAGE, PAGE], [63 * PAGE, PAGE],
    ]);
  });

  it('splits runs at maxRun and honours the start/end window', () => {
    const ram = new Uint8Array(32 * PAGE).fill(9);
    expect([...nonZeroRuns(ram, 0, ram.length, 8 * PAGE)]).toEqual([[0, 8 * PAGE], [8 * PAGE, 8 * PAGE], [16 * PAGE, 8 * PAGE], [24 * PAGE, 8 * PAGE]]);
    expect([...nonZeroRuns(ram, 4 * PAGE, 6 * PAGE)]).toEqual([[4 * PAGE, 2 * PAGE]]);
  });
});

describe('normalizeExtents', () => {
  it('page-aligns, sorts and merges, and refuses extents outside the region', () => {
    expect(normalizeExtents([[3 * PAGE + 10, 5], [0, 1], [PAGE, PAGE], [2 * PAGE, 0]], 8 * PAGE)).toEqual([[0, 2 * PAGE], [3 * PAGE, PAGE]]);
    expect(normalizeExtents(undefined, 8 * PAGE)).toEqual([[0, 8 * PAGE]]);
    expect(() => normalizeExtents([[7 * PAGE, 2 * PAGE]], 8 * PAGE)).toThrow(/data extent 0/);
    expect(() => normalizeExtents([[-1, 2]], 8 * PAGE)).toThrow(RangeError);
  });
});

describe('PageDigest', () => {
  it('depends on where data is, not only on what it is', () => {
    const page = new Uint8Array(PAGE).fill(3);
    const a = new PageDigest('crc32-pages-v1', 4 * PAGE);
    a.addRun(0, page);
    const b = new PageDigest('crc32-pages-v1', 4 * PAGE);
    b.addRun(PAGE, page);
    const c = new PageDigest('crc32-pages-v1', 8 * PAGE);
    c.addRun(0, page);
    const results = [a.finish().value, b.finish().value, c.finish().value];
    expect(new Set(results).size).toBe(3);
  });

  it('refuses out-of-order or unaligned runs', () => {
    const d = new PageDigest('sha256-pages-v1', 4 * PAGE);
    d.addRun(2 * PAGE, new Uint8Array(PAGE));
    expect(() => d.addRun(PAGE, new Uint8Array(PAGE))).toThrow(RangeError);
    expect(() => d.addRun(3 * PAGE, new Uint8Array(10))).toThrow(RangeError);
  });
});

describe.each<ChecksumAlgorithm>(['crc32-pages-v1', 'sha256-pages-v1'])('region files (%s)', (algorithm) => {
  it('writes only non-zero pages, keeps the rest as holes, and verifies', async () => {
    const size = 16 * MiB;
    const ram = patternedRam(size);
    const path = join(root, `region-${algorithm}`);
    const w = await writeRegionFile(path, ram, undefined, algorithm);
    expect(w.dataBytes).toBe(nonZeroPageBytes(ram));
    const st = await stat(path);
    expect(st.size).toBe(size);
    expect(st.blocks * 512).toBeLessThanOrEqual(w.dataBytes + 64 * 1024);
    const v = await verifyRegionFile(path, size, w.checksum, path);
    expect(v.dataBytes).toBe(w.dataBytes);
    expect(v.dataExtents[0]![0]).toBe(1 * MiB); // the first MiB is a hole
  });

  it('gives the same digest for a dense copy of the same content (holes vs written zeros)', async () => {
    const size = 4 * MiB;
    const ram = patternedRam(size);
    const sparse = join(root, `sparse-${algorithm}`);
    const dense = join(root, `dense-${algorithm}`);
    const w = await writeRegionFile(sparse, ram, undefined, algorithm);
    await writeFile(dense, ram);
    expect((await stat(dense)).blocks * 512).toBeGreaterThanOrEqual(size);
    await expect(verifyRegionFile(dense, size, w.checksum, dense)).resolves.toMatchObject({ dataBytes: w.dataBytes });
  });

  it('scans only the given data extents', async () => {
    const size = 1 * MiB;
    const ram = new Uint8Array(size);
    ram.set(randomBytes(2 * PAGE), 0);
    ram.set(randomBytes(PAGE), 100 * PAGE); // outside the extents: the caller said it is a hole
    const path = join(root, `extents-${algorithm}`);
    const w = await writeRegionFile(path, ram, [[0, 2 * PAGE]], algorithm);
    expect(w.dataBytes).toBe(2 * PAGE);
    const fh = await open(path, 'r');
    try {
      expect(dataExtentsOf(fh.fd, size)).toEqual([[0, 2 * PAGE]]);
    } finally {
      await fh.close();
    }
  });
});
