/**
 * Overlays, live external snapshots on a Disk (no KVM needed: the device is drained and switched
 * exactly as under a guest), copy-up beside concurrent writes, and dropping a layer — checked
 * against qemu-img as the oracle.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../../src/block/qcow2/image.js';
import { openImage } from '../../../src/block/open.js';
import { openDisks, type Disk } from '../../../src/vmm/disks.js';
import { dropLayer, readBackingOf } from '../../../src/block/chain/drop.js';
import { backingNameFor, copyUp } from '../../../src/block/chain/merge.js';
import { createOverlay } from '../../../src/block/chain/overlay.js';
import { snapshotDiskLive } from '../../../src/vmm/checkpoints/external.js';
import { pattern, prng, qemuCheck, qemuContent, qemuImg, tempDir } from '../../block/qcow2/helpers.js';

const MiB = 1024 * 1024;
let t: ReturnType<typeof tempDir>;
const open: Disk[] = [];

beforeEach(() => { t = tempDir(); });
afterEach(async () => {
  for (const d of open.splice(0)) await d.close();
  t.cleanup();
});

async function diskOn(path: string, backingFiles = true): Promise<Disk> {
  const [d] = await openDisks([{ path, readonly: false, id: 'disk0', backing_files: backingFiles }]);
  open.push(d!);
  return d!;
}

describe('createOverlay', () => {
  it('records a relative backing name next to the backing file, an absolute one elsewhere, and the format', async () => {
    writeFileSync(join(t.dir, 'base.raw'), pattern(2 * MiB, 1));
    await createOverlay(join(t.dir, 'top.qcow2'), join(t.dir, 'base.raw'), 'raw', 2 * MiB);
    const info = JSON.parse(qemuImg('info', '--output=json', join(t.dir, 'top.qcow2'))) as Record<string, unknown>;
    expect(info['backing-filename']).toBe('base.raw');
    expect(info['backing-filename-format']).toBe('raw');
    expect(qemuContent(join(t.dir, 'top.qcow2'), t.dir).equals(pattern(2 * MiB, 1))).toBe(true);
    expect(backingNameFor('/a/b/top.qcow2', '/c/base.raw')).toBe('/c/base.raw');
  });

  it('never replaces an existing file', async () => {
    writeFileSync(join(t.dir, 'base.raw'), pattern(MiB, 1));
    writeFileSync(join(t.dir, 'taken.qcow2'), 'precious');
    await expect(createOverlay(join(t.dir, 'taken.qcow2'), join(t.dir, 'base.raw'), 'raw', MiB)).rejects.toThrow(/already exists/);
    expect(readFileSync(join(t.dir, 'taken.qcow2'), 'utf8')).toBe('precious');
  });
});

describe('snapshotDiskLive', () => {
  it('freezes the raw image, moves writes to the overlay, and read-locks the frozen image', async () => {
    const base = join(t.dir, 'vm.raw');
    const original = pattern(4 * MiB, 7);
    writeFileSync(base, original);
    const disk = await diskOn(base, false);
    expect(disk.currentConfig().backing_files).toBe(false);
    await disk.backend.write(0, pattern(MiB, 2)); // before the snapshot: lands in vm.raw
    const r = await snapshotDiskLive(disk, join(t.dir, 'vm.s1.qcow2'));
    // The disk now runs on a chain tsvmm made: a reboot or a restore of it must follow it.
    expect(disk.currentConfig()).toMatchObject({ path: join(t.dir, 'vm.s1.qcow2'), backing_files: true });
    expect(r.frozen).toBe(base);
    expect(r.io_pause_ms).toBeGreaterThanOrEqual(0);
    expect(disk.path).toBe(join(t.dir, 'vm.s1.qcow2'));
    expect(disk.backend.format).toBe('qcow2');
    await disk.backend.write(MiB, pattern(MiB, 3)); // after: only in the overlay
    await disk.backend.flush();
    const frozenNow = readFileSync(base);
    const expectedFrozen = Buffer.concat([pattern(MiB, 2), original.subarray(MiB)]);
    expect(frozenNow.equals(expectedFrozen)).toBe(true);
    // Another writer is refused on the frozen image (our read lock); readers are fine.
    const w = spawnSync('qemu-io', ['-f', 'raw', '-c', 'write 0 512', base], { encoding: 'utf8' });
    expect(w.status).not.toBe(0);
    expect(w.stderr + w.stdout).toMatch(/lock/i);
    const seen = Buffer.alloc(4 * MiB);
    await disk.backend.read(0, seen);
    expect(seen.equals(Buffer.concat([pattern(MiB, 2), pattern(MiB, 3), original.subarray(2 * MiB)]))).toBe(true);
  });

  it('leaves the guest on its image and no file behind when the overlay cannot be created', async () => {
    const base = join(t.dir, 'vm.raw');
    writeFileSync(base, pattern(MiB, 1));
    const disk = await diskOn(base);
    await expect(snapshotDiskLive(disk, join(t.dir, 'missing-dir', 'x.qcow2'))).rejects.toThrow(/folder does not exist/);
    expect(disk.path).toBe(base);
    await disk.backend.write(0, pattern(512, 9));
  });

  it('refuses a read-only disk', async () => {
    const base = join(t.dir, 'ro.raw');
    writeFileSync(base, pattern(MiB, 1));
    const [d] = await openDisks([{ path: base, readonly: true, id: 'ro' }]);
    open.push(d!);
    await expect(snapshotDiskLive(d!, join(t.dir, 'ro.s.qcow2'))).rejects.toThrow(/read-only/);
  });
});

describe('openDisks', () => {
  it('without backing_files, refuses an image that names a backing file, before opening that file', async () => {
    // What a guest could do to a raw disk probed as qcow2: write a header naming a host file. The
    // named file is a FIFO here: opening it would block, so the refusal must come first.
    const base = join(t.dir, 'named.raw');
    writeFileSync(base, pattern(MiB, 1));
    await createOverlay(join(t.dir, 'written-by-guest.img'), base, 'raw', MiB);
    rmSync(base);
    expect(spawnSync('mkfifo', [base]).status).toBe(0);
    await expect(diskOn(join(t.dir, 'written-by-guest.img'), false)).rejects.toThrow(/names a backing file \(.*named\.raw\); tsvmm follows backing files only with backing_files=on/);
    // A raw image and a qcow2 image without backing file need nothing.
    writeFileSync(join(t.dir, 'plain.raw'), pattern(MiB, 2));
    expect((await diskOn(join(t.dir, 'plain.raw'), false)).backend.format).toBe('raw');
  });

  it('read-locks every backing file of a chain, and lets them go when the disk closes', async () => {
    const base = join(t.dir, 'base.raw');
    writeFileSync(base, pattern(MiB, 1));
    await createOverlay(join(t.dir, 'top.qcow2'), base, 'raw', MiB);
    const disk = await diskOn(join(t.dir, 'top.qcow2'));
    expect(disk.backingLockPaths).toEqual([base]);
    const w = spawnSync('qemu-io', ['-f', 'raw', '-c', 'write 0 512', base], { encoding: 'utf8' });
    expect(w.status).not.toBe(0);
    expect(w.stderr + w.stdout).toMatch(/lock/i);
    await disk.close();
    open.splice(0);
    expect(spawnSync('qemu-io', ['-f', 'raw', '-c', 'write 0 512', base]).status).toBe(0);
  });
});

describe('copyUp and dropLayer', () => {
  async function chain(): Promise<{ base: string; mid: string; top: string; expected: Buffer }> {
    const base = join(t.dir, 'base.raw');
    const mid = join(t.dir, 'mid.qcow2');
    const top = join(t.dir, 'top.qcow2');
    writeFileSync(base, pattern(8 * MiB, 1));
    await createOverlay(mid, base, 'raw', 8 * MiB);
    qemuImg('convert', '-O', 'raw', base, join(t.dir, 'scratch.raw'));
    spawnSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x22 1M 2M', '-c', 'write -z 5M 64k', mid]);
    await createOverlay(top, mid, 'qcow2', 8 * MiB);
    spawnSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x33 2M 64k', top]);
    return { base, mid, top, expected: qemuContent(top, t.dir) };
  }

  it('drops a middle layer of an unopened chain without changing what the top shows', async () => {
    const c = await chain();
    await dropLayer(c.top, c.mid, null);
    expect(await readBackingOf(c.top)).toBe(c.base);
    expect(qemuCheck(c.top).corruptions).toBe(0);
    expect(qemuCheck(c.top).status).toBe(0);
    expect(qemuContent(c.top, t.dir).equals(c.expected)).toBe(true);
  });

  it('drops the layer below a live active image while it is written, keeping every write', async () => {
    const c = await chain();
    const disk = await diskOn(c.top);
    const rnd = prng(5);
    const model = Buffer.from(c.expected);
    const writes: Promise<void>[] = [];
    const merging = dropLayer(c.top, c.mid, disk.backend);
    for (let i = 0; i < 40; i++) {
      const off = Math.floor(rnd() * 8 * 64) * 16384;
      const data = pattern(16384, 100 + i);
      data.copy(model, off);
      writes.push(disk.backend.write(off, data));
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all([merging, ...writes]);
    await disk.backend.flush();
    const live = Buffer.alloc(8 * MiB);
    await disk.backend.read(0, live);
    expect(live.equals(model)).toBe(true);
    expect(await readBackingOf(c.top)).toBe(c.base);
    await disk.close();
    open.splice(0);
    expect(qemuCheck(c.top).status).toBe(0);
    expect(qemuContent(c.top, t.dir).equals(model)).toBe(true);
  });

  it('copyUp re-checks under the lock: a cluster the top already has is never replaced', async () => {
    const c = await chain();
    const top = await openImage(c.top, { readOnly: false });
    try {
      expect(top).toBeInstanceOf(Qcow2Image);
      const image = top as Qcow2Image;
      const before = Buffer.alloc(64 * 1024);
      await image.read(2 * MiB, before);
      expect(await copyUp(image, null)).toBe(true);
      const after = Buffer.alloc(64 * 1024);
      await image.read(2 * MiB, after);
      expect(after.equals(before)).toBe(true);
      expect(after[0]).toBe(0x33);
      // Everything is now in the top: the chain below can go without changing the content.
      const all = Buffer.alloc(8 * MiB);
      await image.read(0, all);
      expect(all.equals(c.expected)).toBe(true);
    } finally {
      await top.close();
    }
    const map = JSON.parse(qemuImg('map', '--output=json', c.top)) as Array<{ depth: number; data: boolean; zero: boolean }>;
    expect(map.every((e) => e.depth === 0)).toBe(true);
  });

  it('refuses to drop a layer that is not the backing file of the child', async () => {
    const c = await chain();
    await expect(dropLayer(c.top, c.base, null)).rejects.toThrow(/not the backing file/);
  });
});
