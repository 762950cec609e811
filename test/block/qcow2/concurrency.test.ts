import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createQcow2 } from '../../../src/block/qcow2/create.js';
import { openDisk } from '../../../src/block/open.js';
import { Qcow2Image } from '../../../src/block/qcow2/image.js';
import { applySnapshot, createSnapshot } from '../../../src/block/qcow2/snapshots.js';
import { readRefcount, writeRefcount } from '../../../src/block/qcow2/refcounts.js';
import { RwLock } from '../../../src/block/qcow2/rw-lock.js';
import { prng, qemuCheck, qemuContent, tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe('concurrent requests', () => {
  it('writes and reads in flight together, on disjoint ranges, each see exactly their own data', async () => {
    // As on a real disk, requests in flight together have no order among themselves (overwrites
    // of allocated clusters run side by side); those on disjoint ranges must not disturb each other.
    const file = join(tmp.dir, 'conc.qcow2');
    const size = 8 * 1024 * 1024;
    await createQcow2(file, { size, clusterSize: 4096 });
    const disk = await openDisk(file, { readOnly: false });
    expect(disk.format).toBe('qcow2');
    const model = Buffer.alloc(size);
    const rand = prng(99);
    const slots = 40;
    const slot = Math.floor(size / slots);
    for (let round = 0; round < 8; round++) {
      const inflight: Promise<void>[] = [];
      const reads: { offset: number; into: Buffer; expected: Buffer }[] = [];
      for (let i = 0; i < slots; i++) {
        // Slot i gets one request somewhere inside it; rounds revisit clusters written before.
        const length = 1 + Math.floor(rand() * (slot - 1));
        const offset = i * slot + Math.floor(rand() * (slot - length));
        if (rand() < 0.7) {
          const data = Buffer.alloc(length, 1 + ((round * slots + i) % 250));
          inflight.push(disk.write(offset, data));
          data.copy(model, offset);
        } else {
          const into = Buffer.alloc(length);
          reads.push({ offset, into, expected: Buffer.from(model.subarray(offset, offset + length)) });
          inflight.push(disk.read(offset, into));
        }
      }
      await Promise.all(inflight);
      for (const r of reads) expect(r.into.equals(r.expected)).toBe(true);
    }
    await disk.close();
    expect(qemuCheck(file)).toEqual({ corruptions: 0, leaks: 0, checkErrors: 0, status: 0 });
    expect(qemuContent(file, tmp.dir).equals(model)).toBe(true);
  });

  it('overwrites of allocated clusters run together; an internal snapshot taken meanwhile sees those before it', async () => {
    const file = join(tmp.dir, 'inplace.qcow2');
    const cs = 65536;
    await createQcow2(file, { size: 32 * cs, clusterSize: cs });
    const disk = await Qcow2Image.open(file, { readOnly: false });
    await disk.write(0, Buffer.alloc(16 * cs, 0xaa)); // clusters 0-15 allocated, COPIED
    // Count host writes in flight at once: overwrites must overlap, not queue one by one.
    let active = 0;
    let most = 0;
    const writeAt = disk.meta.file.writeAt.bind(disk.meta.file);
    disk.meta.file.writeAt = async (offset, data) => {
      active++;
      most = Math.max(most, active);
      try {
        await new Promise((r) => setTimeout(r, 2));
        return await writeAt(offset, data);
      } finally {
        active--;
      }
    };
    const before = [...Array(8).keys()].map((c) => disk.write(c * cs + 100, Buffer.alloc(4096, 0xbb)));
    const snapshot = createSnapshot(disk.meta, 'mid');
    const after = [...Array(8).keys()].map((c) => disk.write((8 + c) * cs + 100, Buffer.alloc(4096, 0xcc)));
    await Promise.all([...before, snapshot, ...after]);
    expect(most).toBeGreaterThan(1);
    const now = Buffer.alloc(16 * cs);
    await disk.read(0, now);
    await applySnapshot(disk.meta, 'mid');
    const atSnapshot = Buffer.alloc(16 * cs);
    await disk.read(0, atSnapshot);
    await disk.close();
    const expected = (tagAfter: number): Buffer => {
      const b = Buffer.alloc(16 * cs, 0xaa);
      for (let c = 0; c < 16; c++) b.fill(c < 8 ? 0xbb : tagAfter, c * cs + 100, c * cs + 100 + 4096);
      return b;
    };
    expect(now.equals(expected(0xcc))).toBe(true);
    expect(atSnapshot.equals(expected(0xaa))).toBe(true); // the later writes went to new clusters
    expect(qemuCheck(file)).toEqual({ corruptions: 0, leaks: 0, checkErrors: 0, status: 0 });
  });

  it('the readers–writer lock lets readers overlap and keeps writers alone, in order', async () => {
    const lock = new RwLock();
    const log: string[] = [];
    let active = 0;
    let maxReaders = 0;
    const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 5));
    const reader = (n: number): Promise<void> => lock.shared(async () => {
      active++;
      maxReaders = Math.max(maxReaders, active);
      await tick();
      active--;
      log.push(`r${n}`);
    });
    const writer = (n: number): Promise<void> => lock.exclusive(async () => {
      expect(active).toBe(0);
      active = 100;
      await tick();
      active = 0;
      log.push(`w${n}`);
    });
    await Promise.all([reader(1), reader(2), writer(1), reader(3), writer(2)]);
    expect(maxReaders).toBe(2);
    expect(log.indexOf('w1')).toBeLessThan(log.indexOf('r3'));
    expect(log.indexOf('r3')).toBeLessThan(log.indexOf('w2'));
  });
});

describe('refcount entry widths', () => {
  it.each([1, 2, 4, 8, 16, 32, 64])('%i-bit entries round-trip without touching neighbours', (bits) => {
    const block = new Uint8Array(512);
    const max = bits === 64 ? Number.MAX_SAFE_INTEGER : 2 ** bits - 1;
    const entries = (512 * 8) / bits;
    for (let i = 0; i < entries; i++) writeRefcount(block, i, bits, i % 3 === 0 ? max : i % 2);
    for (let i = 0; i < entries; i++) expect(readRefcount(block, i, bits)).toBe(i % 3 === 0 ? max : i % 2);
    // Sub-byte entries are packed least significant bit first (the spec's bit order).
    if (bits === 1) expect(block[0]).toBe(0b11101011); // entries 0..7 = 1,1,0,1,0,1,1,1
  });
});
