/**
 * virtio-blk through Linux's own driver: a raw disk, a qcow2 overlay over a raw base, and a
 * read-only disk, attached to one booted 2-vCPU guest that is snapshotted at its shell; each case
 * restores that snapshot on fresh copies of the disks. The guest makes ext4 file systems with
 * mkfs.ext4, writes and reads files; the host then checks the images with its own tools
 * (e2fsck, debugfs, qemu-img), so a disk that only looks right from inside the guest fails.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LinuxGuest, BOOT_TIMEOUT_MS, removeScratch, scratchDir } from '../support/linux-guest.js';
import { remoteBin, run } from '../support/tsvmm-process.js';
import { apiOk, apiRequest } from '../support/snapshot-vm.js';
import { sha256, host, expectCleanExt4 } from '../support/host-tools.js';
import { setupStep } from '../support/nested-retry.js';

const MiB = 1024 * 1024;
const CASE_TIMEOUT_MS = 300_000;

/** sha256 of each file as the host reads it out of an ext4 image (debugfs, no mount). */
async function hostChecksums(image: string, files: string[], scratch: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of files) {
    const dumped = join(scratch, `dump-${f.replace(/\//g, '_')}`);
    await host('debugfs', ['-R', `dump ${f} ${dumped}`, image]);
    out[f] = sha256(dumped);
  }
  return out;
}

/** Parses `sha256sum` output into path → hash. */
function parseSums(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.trim().split('\n')) {
    const [hash, path] = line.trim().split(/\s+/);
    out[path!] = hash!;
  }
  return out;
}

describe('virtio-blk disks under a real Linux guest', () => {
  let dir: string;
  let snap: string;
  let golden: string;
  let next = 0;
  const ids = ['raw', 'qcow', 'ro'] as const;
  let baseSha: string;
  let roSha: string;

  beforeAll(async () => {
    dir = scratchDir();
    golden = join(dir, 'golden');
    mkdirSync(golden);
    // raw: an empty 64 MiB disk. qcow: a qcow2 overlay over a raw base that holds an ext4 file
    // system with one file. ro: an ext4 image with one file, attached read-only.
    const seed = join(dir, 'seed');
    mkdirSync(seed);
    writeFileSync(join(seed, 'base.txt'), 'from the base image\n');
    await host('truncate', ['-s', '64M', join(golden, 'raw.img')]);
    await host('truncate', ['-s', '64M', join(dir, 'base.raw')]);
    await host('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', seed, join(dir, 'base.raw')]);
    await host('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', join(dir, 'base.raw'), '-F', 'raw', join(golden, 'overlay.qcow2')]);
    writeFileSync(join(seed, 'base.txt'), 'from the read-only disk\n');
    await host('truncate', ['-s', '16M', join(golden, 'ro.ext4')]);
    await host('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', seed, join(golden, 'ro.ext4')]);
    baseSha = sha256(join(dir, 'base.raw'));
    roSha = sha256(join(golden, 'ro.ext4'));

    await setupStep('test/linux/disks.test.ts', 'boot with the three disks and snapshot', async () => {
      const guest = await LinuxGuest.boot({
        cpus: 2, memoryMiB: 512, apiSocket: join(dir, 'boot.sock'),
        disks: [
          `path=${join(golden, 'raw.img')},id=raw,serial=raw`,
          `path=${join(golden, 'overlay.qcow2')},id=qcow,serial=qcow,backing_files=on`,
          `path=${join(golden, 'ro.ext4')},id=ro,serial=ro,readonly=on`,
        ],
      });
      try {
        // Name each disk by its virtio serial: /dev/raw, /dev/qcow, /dev/ro, whatever order
        // the kernel probed them in.
        await guest.ok('for b in /sys/block/vd*; do ln -s /dev/${b##*/} /dev/$(cat $b/serial); done; mkdir -p /mnt/raw /mnt/qcow /mnt/ro');
        // (busybox readlink takes one file at a time)
        expect(await guest.ok('for l in raw qcow ro; do readlink /dev/$l; done | sort | tr "\\n" " "')).toBe('/dev/vda /dev/vdb /dev/vdc ');
        snap = join(dir, 'snap');
        await guest.snapshot(snap);
      } finally {
        await guest.killHard();
      }
    });
  }, 2 * BOOT_TIMEOUT_MS + 240_000);

  afterAll(() => removeScratch(dir));

  /** Restores the snapshot on new copies of the golden disks. */
  async function restore(): Promise<{ guest: LinuxGuest; disks: Record<(typeof ids)[number], string> }> {
    const n = next++;
    const disks = {
      raw: join(dir, `raw-${n}.img`), qcow: join(dir, `overlay-${n}.qcow2`), ro: join(dir, `ro-${n}.ext4`),
    };
    copyFileSync(join(golden, 'raw.img'), disks.raw);
    copyFileSync(join(golden, 'overlay.qcow2'), disks.qcow);
    copyFileSync(join(golden, 'ro.ext4'), disks.ro);
    const guest = await LinuxGuest.restore(snap, { apiSocket: join(dir, `case-${n}.sock`), diskPaths: disks });
    return { guest, disks };
  }

  /**
   * In the guest: mkfs.ext4, write three files of random data, sync, checksum; unmount, drop the
   * page cache, mount again and checksum what comes back from the disk. Returns the sums.
   * (The checksums run in a subshell: a shell whose directory is in the mount cannot unmount it.)
   */
  async function writeAndReadBack(guest: LinuxGuest, dev: string, mnt: string): Promise<Record<string, string>> {
    await guest.ok(`mkfs.ext4 -q -F ${dev}`);
    await guest.ok(`mount -t ext4 ${dev} ${mnt}`);
    await guest.ok(`mkdir ${mnt}/d; dd if=/dev/urandom of=${mnt}/d/a bs=64k count=16 2>/dev/null; dd if=/dev/urandom of=${mnt}/b bs=4k count=3 2>/dev/null; dd if=/dev/urandom of=${mnt}/c bs=1M count=8 2>/dev/null; sync`);
    const written = parseSums(await guest.ok(`(cd ${mnt} && sha256sum d/a b c)`));
    await guest.ok(`umount ${mnt}; echo 3 > /proc/sys/vm/drop_caches; mount -t ext4 ${dev} ${mnt}`);
    const reread = parseSums(await guest.ok(`(cd ${mnt} && sha256sum d/a b c)`));
    expect(reread).toEqual(written);
    await guest.ok(`umount ${mnt}`);
    return written;
  }

  it('raw disk: mkfs.ext4, write, sync, read back; the host finds the same files and a clean file system', { timeout: CASE_TIMEOUT_MS }, async () => {
    const { guest, disks } = await restore();
    let sums: Record<string, string>;
    try {
      expect(await guest.ok('cat /sys/block/$(readlink /dev/raw | cut -d/ -f3)/size')).toBe(String((64 * MiB) / 512));
      sums = await writeAndReadBack(guest, '/dev/raw', '/mnt/raw');
      expect(await guest.end('poweroff -f')).toBe(0);
    } finally {
      guest.kill();
    }
    await expectCleanExt4(disks.raw);
    expect(await hostChecksums(disks.raw, ['/d/a', '/b', '/c'], dir)).toEqual({ '/d/a': sums['d/a'], '/b': sums['b'], '/c': sums['c'] });
  });

  it('qcow2 overlay over a raw base: reads the base through the overlay, then mkfs.ext4 and files land in the overlay only; qemu-img check is clean', { timeout: CASE_TIMEOUT_MS }, async () => {
    const { guest, disks } = await restore();
    let sums: Record<string, string>;
    try {
      expect(await guest.ok('mount -t ext4 -o ro /dev/qcow /mnt/qcow && cat /mnt/qcow/base.txt; umount /mnt/qcow')).toBe('from the base image');
      sums = await writeAndReadBack(guest, '/dev/qcow', '/mnt/qcow');
      expect(await guest.end('poweroff -f')).toBe(0);
    } finally {
      guest.kill();
    }
    const check = await run('qemu-img', ['check', disks.qcow]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toContain('No errors were found on the image.');
    expect(sha256(join(dir, 'base.raw'))).toBe(baseSha);
    const flat = join(dir, 'overlay-flat.raw');
    await host('qemu-img', ['convert', '-O', 'raw', disks.qcow, flat]);
    await expectCleanExt4(flat);
    expect(await hostChecksums(flat, ['/d/a', '/b', '/c'], dir)).toEqual({ '/d/a': sums['d/a'], '/b': sums['b'], '/c': sums['c'] });
  });

  it('readonly=on: Linux sees a read-only disk, reads its files, and every write is refused', { timeout: CASE_TIMEOUT_MS }, async () => {
    const { guest, disks } = await restore();
    try {
      const dev = (await guest.ok('readlink /dev/ro')).replace('/dev/', '');
      expect(await guest.ok(`cat /sys/block/${dev}/ro`)).toBe('1');
      const dd = await guest.run('dd if=/dev/zero of=/dev/ro bs=4096 count=1 oflag=direct');
      expect(dd.status).not.toBe(0);
      expect(dd.output).toMatch(/Operation not permitted|Read-only file system|Permission denied/);
      expect(await guest.ok('mount -t ext4 -o ro /dev/ro /mnt/ro && cat /mnt/ro/base.txt')).toBe('from the read-only disk');
      const touch = await guest.run('touch /mnt/ro/new');
      expect(touch.status).not.toBe(0);
      expect(touch.output).toMatch(/Read-only file system/);
      expect((await guest.run('mount -o remount,rw /mnt/ro')).status).not.toBe(0);
      await guest.ok('umount /mnt/ro');
      expect(await guest.end('poweroff -f')).toBe(0);
    } finally {
      guest.kill();
    }
    expect(sha256(disks.ro)).toBe(roSha);
  });

  it('vm.resize-disk grows the raw disk (tsvmm-remote) and the qcow2 overlay (raw HTTP) under the running guest: Linux sees and uses the new sectors; a shrink and the read-only disk are refused', { timeout: CASE_TIMEOUT_MS }, async () => {
    const { guest, disks } = await restore();
    const sectorsOf = (id: string): Promise<string> => guest.ok(`cat /sys/block/$(readlink /dev/${id} | cut -d/ -f3)/size`);
    /** The driver reads the new capacity in a work item after the configuration interrupt. */
    const waitForSectors = async (id: string, want: number): Promise<void> => {
      for (let i = 0; (await sectorsOf(id)) !== String(want); i++) {
        if (i === 50) throw new Error(`/dev/${id} still has ${await sectorsOf(id)} sectors, not ${want}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    let written: string;
    try {
      const remote = await run(process.execPath, [remoteBin, '--api-socket', guest.apiSocket, 'resize-disk', '--disk', 'raw', '--size', '96M']);
      expect(remote, remote.stderr).toMatchObject({ code: 0, stdout: '' });
      await apiOk(guest.apiSocket, 'PUT', 'vm.resize-disk', { id: 'qcow', desired_size: 128 * MiB });
      await waitForSectors('raw', (96 * MiB) / 512);
      await waitForSectors('qcow', (128 * MiB) / 512);
      expect(await guest.ok('dmesg | grep -c "new size"')).toBe('2');
      // 16 KiB past the old end of each disk, written and read back through the page cache's bypass.
      written = await guest.ok('dd if=/dev/urandom of=/tmp/tail bs=4k count=4 2>/dev/null; sha256sum < /tmp/tail | cut -d" " -f1');
      for (const id of ['raw', 'qcow']) {
        await guest.ok(`dd if=/tmp/tail of=/dev/${id} bs=4k seek=${(80 * MiB) / 4096} oflag=direct 2>/dev/null`);
        expect(await guest.ok(`dd if=/dev/${id} bs=4k skip=${(80 * MiB) / 4096} count=4 iflag=direct 2>/dev/null | sha256sum | cut -d" " -f1`)).toBe(written);
      }
      // Refused with a 400 that says why; the guest keeps its disks as they are.
      const shrink = await apiRequest(guest.apiSocket, 'PUT', 'vm.resize-disk', { id: 'raw', desired_size: 32 * MiB });
      expect([shrink.status, shrink.body]).toEqual([400, expect.stringMatching(/only grows disks/)]);
      const ro = await apiRequest(guest.apiSocket, 'PUT', 'vm.resize-disk', { id: 'ro', desired_size: 32 * MiB });
      expect([ro.status, ro.body]).toEqual([400, expect.stringMatching(/read-only/)]);
      expect(await sectorsOf('raw')).toBe(String((96 * MiB) / 512));
      expect(await guest.end('poweroff -f')).toBe(0);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${guest.diagnostics()}`);
    } finally {
      guest.kill();
    }
    expect(statSync(disks.raw).size).toBe(96 * MiB);
    const info = JSON.parse(await host('qemu-img', ['info', '--output=json', disks.qcow])) as { 'virtual-size': number };
    expect(info['virtual-size']).toBe(128 * MiB);
    const check = await run('qemu-img', ['check', disks.qcow]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    // The 16 KiB at 80 MiB as the host reads them: the raw file itself, the overlay through qemu-img.
    const flat = join(dir, 'resized-flat.raw');
    await host('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', disks.qcow, flat]);
    for (const image of [disks.raw, flat]) {
      const tail = readFileSync(image).subarray(80 * MiB, 80 * MiB + 16 * 1024);
      expect(createHash('sha256').update(tail).digest('hex'), image).toBe(written);
    }
    expect(sha256(disks.ro)).toBe(roSha);
  });
});
