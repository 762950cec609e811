import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { GiB, HIGH_RAM_START, MiB } from '../../src/memory/layout.js';
import { GuestRamError, attachGuestMemory, copyFileRegion, createRamRegions, mapFileRegionPrivate, unmapRegions } from '../../src/memory/regions.js';
import { lseek, pread, SEEK_DATA, SEEK_HOLE } from '../../src/sys/libc.js';
import { buildForWorkers } from '../kvm/helpers/build-for-workers.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-mem-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('createRamRegions', () => {
  it('backs small RAM with one memfd region whose writes reach the memfd', () => {
    const regions = createRamRegions(4 * MiB);
    try {
      expect(regions).toHaveLength(1);
      const r = regions[0]!;
      expect(r.guestBase).toBe(0);
      expect(r.size).toBe(4 * MiB);
      expect(r.memfd).not.toBeNull();
      const mem = new GuestMemory(regions);
      mem.writeU32(0x20_0000, 0xdeadbeef);
      // Sparse: only the touched page is data.
      expect(lseek(r.memfd!, 0, SEEK_DATA)).toBe(0x20_0000);
      expect(lseek(r.memfd!, 0x20_0000, SEEK_HOLE)).toBe(0x20_1000);
      const b = new Uint8Array(4);
      pread(r.memfd!, b, 0x20_0000);
      expect(Buffer.from(b).readUInt32LE(0)).toBe(0xdeadbeef);
    } finally { unmapRegions(regions); }
  });

  it('splits RAM above 3 GiB into a region at 4 GiB (NORESERVE: nothing is allocated)', () => {
    const regions = createRamRegions(5 * GiB);
    try {
      expect(regions.map((r) => [r.index, r.guestBase, r.size])).toEqual([[0, 0, 3 * GiB], [1, HIGH_RAM_START, 2 * GiB]]);
      const mem = new GuestMemory(regions);
      mem.writeU8(HIGH_RAM_START + 2 * GiB - 1, 5);
      expect(mem.readU8(HIGH_RAM_START + 2 * GiB - 1)).toBe(5);
    } finally { unmapRegions(regions); }
  });

  it('says how much RAM it could not get when the host refuses (ENOMEM under a 4 GiB address-space limit)', () => {
    const dist = buildForWorkers();
    const code = `const { createRamRegions } = await import(${JSON.stringify(`file://${dist}/memory/regions.js`)});
      try { createRamRegions(7 * 1024 ** 3); console.log('allocated'); } catch (e) { console.log(e.code + ' ' + e.message); }`;
    const out = execFileSync('prlimit', [`--as=${4 * GiB}`, process.execPath, '--input-type=module', '-e', code], { encoding: 'utf8' });
    expect(out.trim()).toMatch(/^EGUESTRAM cannot allocate 7168 MiB of guest RAM: the host is out of memory/);
  });

  it('rejects sizes it cannot view or map, with GuestRamError', () => {
    expect(() => createRamRegions(1000)).toThrow(GuestRamError);
    expect(() => createRamRegions(0)).toThrow(/positive multiple of 4 KiB/);
    expect(() => createRamRegions(8 * GiB)).toThrow(/limited to 7 GiB/);
  });
});

describe('mapFileRegionPrivate', () => {
  const path = join(dir, 'memory-region-0');
  beforeAll(() => {
    const data = new Uint8Array(2 * MiB);
    data[0x1234] = 0xab;
    writeFileSync(path, data);
  });

  it('maps a snapshot file copy-on-write: guest writes never reach the file', () => {
    for (const prefault of [false, true]) {
      const r = mapFileRegionPrivate(path, 0, 2 * MiB, prefault ? { prefaultExtents: [[0, 2 * MiB]] } : {});
      try {
        expect(r.memfd).toBeNull();
        expect(r.bytes[0x1234]).toBe(0xab);
        r.bytes[0x1234] = 1;
        expect(r.bytes[0x1234]).toBe(1);
      } finally { r.unmap(); }
      const again = mapFileRegionPrivate(path, 0, 2 * MiB);
      expect(again.bytes[0x1234]).toBe(0xab);
      again.unmap();
    }
  });

  it('refuses a file shorter than the region (touching past EOF would be SIGBUS)', () => {
    expect(() => mapFileRegionPrivate(path, 0, 4 * MiB)).toThrow(/has 2097152 bytes, 4194304 needed/);
    expect(() => mapFileRegionPrivate(join(dir, 'nope'), 0, 4096)).toThrow(GuestRamError);
  });
});

describe('copyFileRegion (memory_restore_mode Copy)', () => {
  const path = join(dir, 'copy-region-0');
  const data = new Uint8Array(2 * MiB);
  data.fill(0x5a, 0x10_0000, 0x10_2000);
  data[0x1234] = 0xab;

  it('reads the data extents into a fresh memfd: the file can change or go away afterwards', () => {
    writeFileSync(path, data);
    const r = copyFileRegion(path, 0x1000_0000, 2 * MiB, [[0, 0x2000], [0x10_0000, 0x2000]], 3);
    try {
      expect([r.index, r.guestBase, r.size]).toEqual([3, 0x1000_0000, 2 * MiB]);
      expect(r.memfd).not.toBeNull();
      // A file changed or removed after the restore does not reach the guest (with MAP_PRIVATE,
      // truncation would make the guest's next touch a SIGBUS).
      truncateSync(path, 0);
      unlinkSync(path);
      expect(r.bytes[0x1234]).toBe(0xab);
      expect(r.bytes.subarray(0x10_0000, 0x10_2000).every((b) => b === 0x5a)).toBe(true);
      // Only the extents were read, so only they are data in the memfd: a later snapshot stays sparse.
      expect(lseek(r.memfd!, 0, SEEK_DATA)).toBe(0);
      expect(lseek(r.memfd!, 0, SEEK_HOLE)).toBe(0x2000);
      expect(lseek(r.memfd!, 0x2000, SEEK_DATA)).toBe(0x10_0000);
      r.bytes[0] = 7; // guest RAM is writable
      expect(r.bytes[0]).toBe(7);
    } finally { r.unmap(); }
  });

  it('refuses a short file, a missing file and an extent outside the region', () => {
    writeFileSync(path, data);
    expect(() => copyFileRegion(path, 0, 4 * MiB, [])).toThrow(/has 2097152 bytes, 4194304 needed/);
    expect(() => copyFileRegion(join(dir, 'nope'), 0, 4096, [])).toThrow(/cannot open guest memory file .*nope: ENOENT/);
    expect(() => copyFileRegion(path, 0, 2 * MiB, [[2 * MiB - 4096, 8192]])).toThrow(/data extent .* lies outside its 2097152 bytes/);
  });
});

describe('attachGuestMemory', () => {
  it('a worker sees and writes the same guest RAM through the descriptor', async () => {
    const dist = buildForWorkers();
    const regions = createRamRegions(2 * MiB);
    try {
      const mem = new GuestMemory(regions);
      mem.writeU32(0x1000, 0x11223344);
      const w = new Worker(
        `import { parentPort, workerData } from 'node:worker_threads';
         const { attachGuestMemory } = await import(workerData.regionsUrl);
         const mem = attachGuestMemory(workerData.desc);
         const seen = mem.readU32(0x1000);
         mem.writeU32(0x2000, 0x55667788);
         parentPort.postMessage(seen);`,
        { eval: true, workerData: { desc: mem.describe(), regionsUrl: `file://${dist}/memory/regions.js` } },
      );
      const seen = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
      expect(seen).toBe(0x11223344);
      expect(mem.readU32(0x2000)).toBe(0x55667788);
      await w.terminate();
    } finally { unmapRegions(regions); }
  });

  it('refuses a descriptor without host addresses', () => {
    expect(() => attachGuestMemory({ regions: [{ index: 0, guestBase: 0, size: 4096, hostAddress: 0n }] })).toThrow(/no host address/);
  });
});
