import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { SnapshotError } from '../../src/snapshot/errors.js';
import { documentChecksum } from '../../src/snapshot/format.js';
import type { MemorySource, SnapshotInput } from '../../src/snapshot/writer.js';
import type { VmConfig } from '../../src/vmm/config.js';
import { SNAPSHOT_CONFIG } from '../../src/vmm/snapshot-config.js';

export const PAGE = 4096;
export const MiB = 1024 * 1024;
/** What readSnapshot needs besides the directory: the restoring VMM's device types and config codec. */
export const READ_OPTIONS = { knownDeviceTypes: ['serial', 'virtio-blk', 'i8042'], configCodec: SNAPSHOT_CONFIG };

export async function tempRoot(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'tsvmm-snapshot-test-'));
}

export function testConfig(memorySize: number, bootVcpus = 2): VmConfig {
  return {
    cpus: { boot_vcpus: bootVcpus, max_vcpus: bootVcpus },
    memory: { size: memorySize },
    payload: { kernel: '/images/vmlinux', cmdline: 'console=ttyS0' },
    disks: [{ path: '/images/root.raw', readonly: false, id: 'disk0' }],
    serial: { mode: 'Tty' },
    console: { mode: 'Off' },
  };
}

/**
 * A RAM image with holes at the start, middle and end, a long zero stretch, isolated pages,
 * a page whose only non-zero byte is its last, and a multi-MiB data run.
 */
export function patternedRam(size: number, seed = 1): Uint8Array {
  const ram = new Uint8Array(size);
  const fill = (off: number, len: number): void => {
    const r = randomBytes(len);
    r[0] = seed; // never an all-zero page
    ram.set(r, off);
  };
  fill(1 * MiB, 1 * MiB + 5 * PAGE); // run crossing a 64 KiB boundary at an odd page count
  fill(3 * MiB + 7 * PAGE, PAGE); // isolated page
  ram[3 * MiB + 20 * PAGE + PAGE - 1] = 0xa5; // only the last byte of a page
  fill(size - 2 * PAGE - 3 * MiB, 2 * PAGE); // near the end, before the final zero area
  return ram;
}

export function nonZeroPageBytes(ram: Uint8Array): number {
  let n = 0;
  for (let off = 0; off < ram.length; off += PAGE) {
    if (ram.subarray(off, off + PAGE).some((b) => b !== 0)) n += PAGE;
  }
  return n;
}

export function testInput(memorySize: number, ram: Uint8Array[], extra: Partial<SnapshotInput<VmConfig>> = {}): SnapshotInput<VmConfig> {
  const memory: MemorySource[] = ram.map((bytes, i) => ({ guestBase: i === 0 ? 0 : 4 * 1024 * MiB, size: bytes.length, bytes }));
  return {
    config: testConfig(memorySize),
    configCodec: SNAPSHOT_CONFIG,
    vcpus: [{ regs: { rip: '0x100000' }, xsave: { base64: 'AAAA' } }, { regs: { rip: '0x0' } }],
    vm: { clock: { clock: '0x12345678abcdef' }, irqchip: [] },
    devices: { serial0: { type: 'serial', state: { ier: 0, lcr: 3 } }, disk0: { type: 'virtio-blk', state: { queues: [] } } },
    disks: [{ id: 'disk0', path: '/images/root.raw', identity: { size: 1048576, mtime_ns: '0x1' } }],
    memory,
    ...extra,
  };
}

/** Edits vm.json and, unless `keepChecksum`, re-seals it so only the edit itself is at fault. */
export async function editVmJson(dir: string, edit: (doc: Record<string, any>) => void, keepChecksum = false): Promise<void> {
  const file = join(dir, 'vm.json');
  const doc = JSON.parse(await readFile(file, 'utf8')) as Record<string, any>;
  edit(doc);
  if (!keepChecksum) doc.checksum = documentChecksum(doc);
  await writeFile(file, JSON.stringify(doc, null, 2));
}

export async function expectSnapshotError(p: Promise<unknown>, fileEnd: string, message: RegExp): Promise<SnapshotError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err, 'expected a SnapshotError').toBeInstanceOf(SnapshotError);
  const se = err as SnapshotError;
  expect(se.code).toBe('ESNAPSHOT');
  expect(se.file?.endsWith(fileEnd), `error names ${se.file}, expected …${fileEnd}`).toBe(true);
  expect(se.message).toMatch(message);
  expect(se.message).toContain(fileEnd);
  return se;
}
