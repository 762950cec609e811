#!/usr/bin/env node
// Snapshot format benchmark: write and read-verify times and sizes for 1 GiB of RAM with 16 MiB
// and 512 MiB touched (plus 4 GiB of RAM with 64 MiB touched, to show that cost follows the data,
// not the RAM size), on tmpfs (/dev/shm) and on the root filesystem (/tmp), with both checksums.
// Runs against dist/ (npm run build first). Guest RAM is a real memfd mapping, as in the VMM, and
// the writer gets its data extents from SEEK_DATA/SEEK_HOLE on the memfd. Reads right after the
// write come from the page cache (the usual case for a restore on the same host); a cold-cache
// read is bounded by the disk instead. The machine is shared: numbers are best of RUNS (default 2).
import { randomFillSync, createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, openSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { writeSnapshot, readSnapshot, dataExtentsOf } from '../dist/snapshot/index.js';
import { ramLayout } from '../dist/memory/layout.js';
import { SNAPSHOT_CONFIG } from '../dist/vmm/snapshot-config.js';
import { memfdCreate, ftruncate, mmap, munmap, viewAt, close, PROT_READ, PROT_WRITE, MAP_SHARED } from '../dist/sys/index.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const GROUP = 256 * 1024; // touched memory comes in 256 KiB allocations at scattered offsets
const RUNS = Number(process.env.RUNS ?? 2);

/** A memfd of `ramSize` bytes with `touched` bytes of random data spread over it. */
function makeGuestRam(ramSize, touched) {
  const fd = memfdCreate('bench-ram');
  ftruncate(fd, ramSize);
  const addr = mmap(ramSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0, 'bench RAM');
  const bytes = new Uint8Array(viewAt(addr, ramSize));
  // Group i goes to slot (i * stride) mod slots; an odd stride keeps the slots distinct.
  const slots = ramSize / GROUP;
  const groups = touched / GROUP;
  const stride = 2 * Math.floor(slots / groups / 2) + 1;
  for (let i = 0; i < groups; i++) {
    const off = ((i * stride) % slots) * GROUP;
    randomFillSync(bytes.subarray(off, off + GROUP)); // randomFillSync offsets stop at 2^31
  }
  const extents = dataExtentsOf(fd, ramSize);
  // Guest-physical regions map to consecutive ranges of the memfd.
  let fileOffset = 0;
  const memory = ramLayout(ramSize).map((r) => {
    const start = fileOffset;
    fileOffset += r.size;
    const dataExtents = extents
      .map(([o, l]) => [Math.max(o, start), Math.min(o + l, start + r.size)])
      .filter(([s, e]) => e > s)
      .map(([s, e]) => [s - start, e - s]);
    return { guestBase: r.guestBase, size: r.size, bytes: bytes.subarray(start, start + r.size), dataExtents };
  });
  return { fd, addr, ramSize, memory };
}

function input(ram) {
  return {
    config: { cpus: { boot_vcpus: 1, max_vcpus: 1 }, memory: { size: ram.ramSize }, payload: { kernel: '/vmlinux' }, disks: [], serial: { mode: 'Null' } },
    configCodec: SNAPSHOT_CONFIG,
    vcpus: [{}], vm: {}, devices: {}, disks: [], memory: ram.memory,
  };
}

/** Bytes the directory occupies on disk (du -sk), as opposed to its files' apparent size. */
function du(path) {
  return Number(execFileSync('du', ['-sk', path]).toString().split('\t')[0]) * 1024;
}

function ms(start) {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** The naive alternative: sha256 over every byte of the file, holes read as zeros. */
function naiveSha256(path, size) {
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(8 * MiB);
  const h = createHash('sha256');
  const t = process.hrtime.bigint();
  for (let off = 0; off < size; off += buf.length) h.update(buf.subarray(0, readSync(fd, buf, 0, buf.length, off)));
  h.digest();
  closeSync(fd);
  return ms(t);
}

const rows = [];
const cases = [[1 * GiB, 16 * MiB], [1 * GiB, 512 * MiB], [4 * GiB, 64 * MiB]];
for (const [ramSize, touched] of cases) {
  const ram = makeGuestRam(ramSize, touched);
  for (const base of ['/dev/shm', '/tmp']) {
    for (const algorithm of ['crc32-pages-v1', 'sha256-pages-v1']) {
      const root = mkdtempSync(join(base, 'tsvmm-bench-'));
      let best = { write: Infinity, read: Infinity };
      let result;
      for (let run = 0; run < RUNS; run++) {
        const dir = join(root, `snap-${run}`); // fresh destination: replace/removal cost not included
        const t0 = process.hrtime.bigint();
        result = await writeSnapshot(dir, input(ram), { checksumAlgorithm: algorithm });
        const write = ms(t0);
        const t1 = process.hrtime.bigint();
        await readSnapshot(dir, { knownDeviceTypes: [], configCodec: SNAPSHOT_CONFIG });
        const read = ms(t1);
        best = { write: Math.min(best.write, write), read: Math.min(best.read, read) };
      }
      const dir = result.dir;
      const data = result.regions.reduce((n, r) => n + r.dataBytes, 0);
      const naive = algorithm === 'sha256-pages-v1' && ramSize === GiB ? naiveSha256(join(dir, 'memory-region-0'), ramSize) : undefined;
      rows.push({
        fs: base, RAM: `${ramSize / GiB} GiB`, touched: `${touched / MiB} MiB`, checksum: algorithm,
        'write ms': best.write.toFixed(0), 'write MB/s': (data / MiB / (best.write / 1000)).toFixed(0),
        du: `${(du(dir) / MiB).toFixed(1)} MiB`,
        'read+verify ms': best.read.toFixed(0), 'verify MB/s': (data / MiB / (best.read / 1000)).toFixed(0),
        'naive sha256(file) ms': naive === undefined ? '' : naive.toFixed(0),
      });
      rmSync(root, { recursive: true, force: true });
    }
  }
  munmap(ram.addr, ramSize);
  close(ram.fd);
}
console.log(`best of ${RUNS} runs; MB/s = bytes of data (non-zero pages) per second; files are sparse (apparent size = RAM size)`);
console.table(rows);
