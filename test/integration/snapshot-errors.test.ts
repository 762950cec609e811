/**
 * Restoring a damaged or mismatched snapshot: every case must be refused with one clear line
 * naming the file and the problem, through `tsvmm --restore` and through `vm.restore` on an
 * empty VMM, and must leave nothing half-built (the empty VMM still answers and a later valid
 * restore works).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, readSync, rmSync, truncateSync, unlinkSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { documentChecksum, type SnapshotDocument } from '../../src/snapshot/format.js';
import type { VmConfig } from '../../src/vmm/config.js';
import { checkDiskIdentity, diskIdentity } from '../../src/vmm/disk-identity.js';
import {
  apiOk, apiRequest, bootTiny, fileUrl, killHard, pauseAndSnapshot, runTsvmm, ticksIn, waitForApi,
} from '../support/snapshot-vm.js';
import { TsvmmProcess } from '../support/tsvmm-process.js';
import { deadline } from '../support/timing.js';
import { setupStep } from '../support/nested-retry.js';

const MiB = 1024 * 1024;

let work: string;
let base: string;
/** A second snapshot whose disk the disk-identity case may change without affecting the others. */
let diskBase: string;
let disk: string;
let lastTickAtSnapshot: number;
let emptySock: string;
let empty: TsvmmProcess | undefined;

/** A copy of the good snapshot (sparse), to damage. */
function copyOfBase(name: string, from = base): string {
  const dir = join(work, name);
  execFileSync('cp', ['-a', '--sparse=always', from, dir]);
  return dir;
}

/** vm.json's config as parsed JSON: unlike a VmConfig, the tests may damage it. */
type EditableConfig = { -readonly [K in keyof VmConfig]: { -readonly [F in keyof VmConfig[K]]: VmConfig[K][F] } };

/** Rewrites vm.json through `edit`, re-sealing its checksum so only the edited field is wrong. */
function editVmJson(dir: string, edit: (doc: SnapshotDocument<EditableConfig>) => void): void {
  const file = join(dir, 'vm.json');
  const doc = JSON.parse(readFileSync(file, 'utf8')) as SnapshotDocument<EditableConfig>;
  edit(doc);
  doc.checksum = documentChecksum(doc as unknown as Record<string, unknown>);
  writeFileSync(file, JSON.stringify(doc));
}

/** Flips one bit of the first non-zero byte at or after `from` in `file`; returns its offset. */
function flipBitInData(file: string, from = 0): number {
  const fd = openSync(file, 'r+');
  try {
    const buf = Buffer.alloc(1 << 20);
    for (let pos = from; ; pos += buf.length) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) throw new Error(`${file} has no data after ${from}`);
      const i = buf.subarray(0, n).findIndex((b) => b !== 0);
      if (i >= 0) {
        writeSync(fd, Buffer.from([buf[i]! ^ 0x10]), 0, 1, pos + i);
        return pos + i;
      }
    }
  } finally {
    closeSync(fd);
  }
}

interface BadCase {
  name: string;
  damage(dir: string): void;
  /** What the one-line error must say (it must also name the file, see `file`). */
  message: RegExp;
  /** The file the message must name, relative to the snapshot directory ('' = the directory). */
  file: string;
}

const CASES: BadCase[] = [
  {
    name: 'missing vm.json',
    damage: (d) => unlinkSync(join(d, 'vm.json')),
    message: /vm\.json is missing/,
    file: 'vm.json',
  },
  {
    name: 'missing memory-region file',
    damage: (d) => unlinkSync(join(d, 'memory-region-0')),
    message: /memory-region-0 is missing/,
    file: 'memory-region-0',
  },
  {
    name: 'truncated memory-region file',
    damage: (d) => truncateSync(join(d, 'memory-region-0'), 64 * MiB - 4096),
    message: /memory-region-0 is truncated: \d+ bytes, vm\.json declares \d+/,
    file: 'memory-region-0',
  },
  {
    name: 'a flipped bit in a memory region',
    damage: (d) => { flipBitInData(join(d, 'memory-region-0'), 1 * MiB); },
    message: /memory-region-0 is corrupt: .*checksum/,
    file: 'memory-region-0',
  },
  {
    name: 'a flipped bit in vm.json',
    // '1' ^ 0x01 = '0': still valid JSON, so only the checksum can catch it.
    damage: (d) => {
      const file = join(d, 'vm.json');
      const text = readFileSync(file, 'latin1');
      const at = text.indexOf('"tick_ms=');
      const i = at >= 0 ? at : text.indexOf('"size":');
      const digit = text.slice(i).search(/[13579]/) + i;
      writeFileSync(file, text.slice(0, digit) + String.fromCharCode(text.charCodeAt(digit) ^ 1) + text.slice(digit + 1), 'latin1');
    },
    message: /vm\.json is corrupt or was edited: its checksum/,
    file: 'vm.json',
  },
  {
    name: 'a newer major format version',
    damage: (d) => editVmJson(d, (doc) => { doc.version = '2.0'; }),
    message: /snapshot format 2\.0 is newer than this tsvmm understands.*upgrade tsvmm/,
    file: 'vm.json',
  },
  {
    name: 'a region size that does not match the config',
    damage: (d) => editVmJson(d, (doc) => { doc.config.memory.size = 128 * MiB; }),
    message: /memory\.regions .* do not match the layout of config\.memory\.size 134217728/,
    file: 'vm.json',
  },
  {
    name: 'a vCPU count that does not match the config',
    damage: (d) => editVmJson(d, (doc) => { doc.config.cpus = { boot_vcpus: 2, max_vcpus: 2 }; }),
    message: /vcpus holds 1 vCPU states but config\.cpus\.boot_vcpus is 2/,
    file: 'vm.json',
  },
  {
    name: 'an unknown device type',
    damage: (d) => editVmJson(d, (doc) => { doc.devices['gpu0'] = { type: 'virtio-gpu', state: {} }; }),
    message: /devices\.gpu0\.type "virtio-gpu" is not a device type this tsvmm can restore/,
    file: 'vm.json',
  },
];

/** Boots the tiny kernel with one raw disk, snapshots it to `dir`, and returns the last tick seen. */
async function makeSnapshot(dir: string, diskPath: string): Promise<number> {
  writeFileSync(diskPath, Buffer.alloc(4 * MiB, 0x5a));
  const sock = `${dir}.sock`;
  const vm = await bootTiny({ cpus: 1, memory: '64M', cmdline: 'tiny.ticks tiny.tick_ms=50', socketPath: sock, disks: [`path=${diskPath},id=disk0`] });
  try {
    await vm.waitFor(/^tick 2\n/m);
    const { consoleAtPause } = await pauseAndSnapshot(vm, sock, dir);
    return ticksIn(consoleAtPause).at(-1)!.n;
  } finally {
    await killHard(vm);
  }
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'tsvmm-snap-err-'));
  base = join(work, 'base');
  diskBase = join(work, 'disk-base');
  disk = join(work, 'disk-b.raw');
  [lastTickAtSnapshot] = await setupStep('test/integration/snapshot-errors.test.ts', 'boot and snapshot two tiny VMs', () =>
    Promise.all([makeSnapshot(base, join(work, 'disk.raw')), makeSnapshot(diskBase, disk)]));
  emptySock = join(work, 'empty.sock');
  empty = new TsvmmProcess(['--api-socket', emptySock]);
  await waitForApi(emptySock, empty);
}, deadline(360_000));

afterAll(async () => {
  if (empty !== undefined) await killHard(empty);
  rmSync(work, { recursive: true, force: true });
});

/**
 * Both paths must refuse `dir` with `message`, naming `file` (relative to `dir`, '' for `dir`
 * itself, or absolute); the empty VMM stays empty and alive.
 */
async function expectRefused(dir: string, message: RegExp, file: string): Promise<void> {
  const named = new RegExp((file === '' ? dir : file.startsWith('/') ? file : join(dir, file)).replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));

  const cli = await runTsvmm(['--restore', `source_url=${fileUrl(dir)}`]);
  expect(cli.code, `tsvmm --restore exit status; stderr: ${cli.stderr}`).not.toBe(0);
  expect(cli.code).not.toBeNull();
  const lines = cli.stderr.split('\n').filter((l) => l.length > 0);
  expect(lines, cli.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^tsvmm: /);
  expect(lines[0]).toMatch(message);
  expect(lines[0]).toMatch(named);
  expect(cli.stdout).toBe('');

  const r = await apiRequest(emptySock, 'PUT', 'vm.restore', { source_url: fileUrl(dir), prefault: false });
  expect(r.status, r.body).toBeGreaterThanOrEqual(400);
  expect(r.status, r.body).toBeLessThan(500);
  const err = (r.json as { error: { code: string; message: string } }).error;
  expect(err.message).toMatch(message);
  expect(err.message).toMatch(named);
  expect(err.message).not.toContain('\n');
  // Nothing half-built: the VMM answers, and has no VM.
  expect((await apiRequest(emptySock, 'GET', 'vmm.ping')).status).toBe(200);
  expect((await apiRequest(emptySock, 'GET', 'vm.info')).status).toBe(404);
}

describe('restoring a bad snapshot is refused cleanly', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const dir = copyOfBase(c.name.replace(/\W+/g, '-'));
      c.damage(dir);
      await expectRefused(dir, c.message, c.file);
    });
  }

  it('a snapshot directory that does not exist', async () => {
    await expectRefused(join(work, 'nowhere'), /snapshot directory .*nowhere does not exist/, '');
  });

  it('a disk whose content changed since the snapshot is refused (and accepted when forced)', async () => {
    const dir = copyOfBase('disk-changed', diskBase);
    const doc = JSON.parse(readFileSync(join(dir, 'vm.json'), 'utf8')) as SnapshotDocument<VmConfig>;
    const saved = doc.disks[0]!.identity as unknown as Parameters<typeof checkDiskIdentity>[1];
    const fd = openSync(disk, 'r+');
    writeSync(fd, Buffer.from('changed'), 0, 7, 2 * MiB);
    closeSync(fd);
    await expectRefused(dir, /disk "disk0" \(.*disk-b\.raw\) is not the image the snapshot was taken with: .*restore with force=on/, disk);
    // No CLI/API spelling for force exists yet; the check itself must let a forced restore through.
    const diskConfig = { id: 'disk0', path: disk, readonly: false } as Parameters<typeof checkDiskIdentity>[0];
    await expect(checkDiskIdentity(diskConfig, saved, false)).rejects.toThrow(/not the image/);
    await expect(checkDiskIdentity(diskConfig, saved, true)).resolves.toBeUndefined();
    // Same content and size at another path (a clone's copy) is accepted; different content is not.
    const copy = join(work, 'disk-copy.raw');
    writeFileSync(copy, Buffer.alloc(4 * MiB, 0x5a));
    await expect(checkDiskIdentity({ ...diskConfig, path: copy }, saved, false)).resolves.toBeUndefined();
    expect((await diskIdentity(copy)).sample_sha256).toBe(saved.sample_sha256);
    writeFileSync(copy, Buffer.alloc(4 * MiB, 0x5b));
    await expect(checkDiskIdentity({ ...diskConfig, path: copy }, saved, false)).rejects.toThrow(/its content differs/);
  });

  it('after all the refusals, the same empty VMM restores a good snapshot and the guest continues', async () => {
    const dir = copyOfBase('good');
    const r = await apiRequest(emptySock, 'PUT', 'vm.restore', { source_url: fileUrl(dir) });
    expect(r.status, r.body).toBe(204);
    expect(((await apiOk(emptySock, 'GET', 'vm.info')).json as { state: string }).state).toBe('Paused');
    await apiOk(emptySock, 'PUT', 'vm.resume');
    await empty!.waitFor(new RegExp(`^tick ${lastTickAtSnapshot + 2}\\n`, 'm'));
    expect(empty!.stdout).not.toMatch(/tiny: boot/);
    expect(ticksIn(empty!.stdout)[0]!.n).toBe(lastTickAtSnapshot + 1);
  });
});
