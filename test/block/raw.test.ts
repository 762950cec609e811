import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RawBackend } from '../../src/block/raw.js';
import { BlockError } from '../../src/block/backend.js';

let dir: string;
let image: string;
const SIZE = 4 << 20;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsvmm-raw-'));
  image = join(dir, 'disk.raw');
  await writeFile(image, new Uint8Array(SIZE).fill(0x5a));
});
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

describe('RawBackend', () => {
  it('reports size and format and reads/writes at byte offsets', async () => {
    const b = await RawBackend.open(image);
    expect([b.size, b.format, b.readOnly]).toEqual([SIZE, 'raw', false]);
    await b.write(1000, new Uint8Array([1, 2, 3]));
    const got = new Uint8Array(5);
    await b.read(999, got);
    expect([...got]).toEqual([0x5a, 1, 2, 3, 0x5a]);
    await b.flush();
    await b.close();
    expect([...(await readFile(image)).subarray(999, 1004)]).toEqual([0x5a, 1, 2, 3, 0x5a]);
  });

  it('reads zeros inside size but past a shrunken end of file', async () => {
    const b = await RawBackend.open(image);
    await truncate(image, 4096 + 10);
    const got = new Uint8Array(64);
    await b.read(4096, got);
    expect([...got.subarray(0, 10)]).toEqual(new Array(10).fill(0x5a));
    expect(got.subarray(10).every((x) => x === 0)).toBe(true);
    await b.close();
  });

  it('refuses out-of-range and read-only writes with BlockError', async () => {
    const b = await RawBackend.open(image, { readOnly: true });
    await expect(b.read(SIZE - 1, new Uint8Array(2))).rejects.toBeInstanceOf(BlockError);
    await expect(b.read(-1, new Uint8Array(1))).rejects.toBeInstanceOf(BlockError);
    await expect(b.write(0, new Uint8Array(1))).rejects.toThrow(/read-only/);
    await expect(b.discard(0, 512)).rejects.toThrow(/read-only/);
    await expect(b.writeZeroes(0, 512, false)).rejects.toThrow(/read-only/);
    await b.flush();
    await b.close();
    await expect(b.read(0, new Uint8Array(1))).rejects.toThrow(/closed/);
    await expect(RawBackend.open(join(dir, 'missing.raw'))).rejects.toThrow(/cannot open .*missing.raw.*: no such file/);
    await expect(RawBackend.open(dir)).rejects.toThrow(/not a regular file|is a directory/);
  });

  it('resize grows the file (the new tail reads as zeros) and shrinks it; a read-only image refuses', async () => {
    const b = await RawBackend.open(image);
    await b.resize(2 * SIZE);
    expect([b.size, (await stat(image)).size]).toEqual([2 * SIZE, 2 * SIZE]);
    const tail = new Uint8Array(16).fill(1);
    await b.read(SIZE - 8, tail);
    expect([...tail]).toEqual([...new Array(8).fill(0x5a), ...new Array(8).fill(0)]);
    await b.write(2 * SIZE - 1, new Uint8Array([7]));
    await b.resize(SIZE / 2);
    expect([b.size, (await stat(image)).size]).toEqual([SIZE / 2, SIZE / 2]);
    await expect(b.read(SIZE / 2, new Uint8Array(1))).rejects.toBeInstanceOf(BlockError);
    await expect(b.resize(-1)).rejects.toThrow(/not a size/);
    await b.close();
    const ro = await RawBackend.open(image, { readOnly: true });
    await expect(ro.resize(SIZE)).rejects.toThrow(/read-only/);
    await ro.close();
  });

  it('discard punches a hole and write-zeroes zeroes, both keeping the size', async () => {
    const b = await RawBackend.open(image);
    const before = (await stat(image)).blocks;
    await b.discard(1 << 20, 1 << 20);
    expect((await stat(image)).blocks).toBeLessThan(before);
    await b.writeZeroes(0, 4096, false);
    await b.writeZeroes(8192, 4096, true);
    await b.close();
    const f = await readFile(image);
    expect(f.length).toBe(SIZE);
    expect(f.subarray(1 << 20, 2 << 20).every((x) => x === 0)).toBe(true);
    expect(f.subarray(0, 4096).every((x) => x === 0)).toBe(true);
    expect(f.subarray(8192, 12288).every((x) => x === 0)).toBe(true);
    expect(f.subarray(4096, 8192).every((x) => x === 0x5a)).toBe(true);
    expect(f[(2 << 20)]).toBe(0x5a);
  });
});
