import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createQcow2 } from '../../../../src/devices/block/qcow2/create.js';
import { openDisk } from '../../../../src/devices/block/qcow2/open.js';
import { readRefcount, writeRefcount } from '../../../../src/devices/block/qcow2/refcounts.js';
import { RwLock } from '../../../../src/devices/block/qcow2/rw-lock.js';
import { prng, qemuCheck, qemuContent, tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe('concurrent requests', () => {
  it('writes and reads in flight together behave as if applied in submission order', async () => {
    const file = join(tmp.dir, 'conc.qcow2');
    const size = 8 * 1024 * 1024;
    await createQcow2(file, { size, clusterSize: 4096 });
    const disk = await openDisk(file, { readOnly: false });
    expect(disk.format).toBe('qcow2');
    const model = Buffer.alloc(size);
    const rand = prng(99);
    for (let round = 0; round < 5; round++) {
      const inflight: Promise<void>[] = [];
      const reads: { offset: number; into: Buffer; expected: Buffer }[] = [];
      for (let i = 0; i < 40; i++) {
        const offset = Math.floor(rand() * (size - 40000));
        const length = 1 + Math.floor(rand() * 40000);
        if (rand() < 0.7) {
          const data = Buffer.alloc(length, 1 + ((round * 40 + i) % 250));
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
