/**
 * Snapshot and restore of a running Linux guest: pause → snapshot → kill the VMM → restore in a
 * new process → resume. A 1-vCPU and a 2-vCPU guest are booted once, each with one
 * counter loop per CPU appending to a log on an ext4 disk (support/linux-counters.ts), and
 * snapshotted while they count. Each case restores a snapshot and checks that time and interrupts
 * go on on every CPU, that the loops go on where they were, that no write was lost (the host
 * reads each log back: 1..N without a gap) and that the file system is clean afterwards.
 *
 * Chains of restore → run → snapshot → kill of a 2-vCPU Linux, many in a row, are
 * bench/linux-restore-loop.mjs (a stress run, too long for the test tier nested).
 */
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LinuxGuest, BOOT_TIMEOUT_MS, removeScratch, scratchDir } from '../support/linux-guest.js';
import {
  expectGaplessLog, expectNoRcuStall, readProgress, startCounters, stopCounters, waitForProgress, type Progress,
} from '../support/linux-counters.js';
import { run } from '../support/tsvmm-process.js';
import { expectCleanExt4, sha256, host } from '../support/host-tools.js';
import { setupStep } from '../support/nested-retry.js';

const FILE = 'test/linux/restore.test.ts';

const CASE_TIMEOUT_MS = 420_000;

/** A booted guest's snapshot: where it is, the disk as it was, and the loops' progress then. */
interface Saved {
  cpus: number;
  snap: string;
  disk: string;
  at: Progress;
}

describe('real Linux: pause → snapshot → kill → restore in a new process → resume', () => {
  let dir: string;
  const saved = new Map<number, Saved>();
  let caseNo = 0;
  let cloneAttempt = 0;

  async function bootAndSnapshot(cpus: number): Promise<Saved> {
    const golden = join(dir, `golden-${cpus}.raw`);
    await host('truncate', ['-s', '64M', golden]);
    const guest = await LinuxGuest.boot({ cpus, memoryMiB: 384, apiSocket: join(dir, `boot-${cpus}.sock`), disks: [`path=${golden},id=data`] });
    try {
      await startCounters(guest, cpus);
      const at = await readProgress(guest, cpus);
      const snap = join(dir, `snap-${cpus}`);
      await guest.snapshot(snap);
      return { cpus, snap, disk: golden, at };
    } finally {
      await guest.killHard();
    }
  }

  beforeAll(async () => {
    dir = scratchDir();
    saved.set(1, await setupStep(FILE, 'boot and snapshot 1 vCPU', () => bootAndSnapshot(1)));
    saved.set(2, await setupStep(FILE, 'boot and snapshot 2 vCPUs', () => bootAndSnapshot(2)));
  }, 5 * BOOT_TIMEOUT_MS);

  afterAll(() => removeScratch(dir));

  /** Checks a running restored guest, stops it, and checks its disk on the host. */
  async function continueAndFinish(guest: LinuxGuest, s: Saved, disk: string, extra?: (g: LinuxGuest) => Promise<void>): Promise<void> {
    let last: number[];
    try {
      const first = await readProgress(guest, s.cpus);
      // The loops and the clock go on from where the snapshot left them, not from the start.
      first.counters.forEach((n, c) => expect(n).toBeGreaterThanOrEqual(s.at.counters[c]!));
      expect(first.uptime).toBeGreaterThanOrEqual(s.at.uptime);
      const later = await waitForProgress(guest, s.cpus, first);
      expect(later.uptime).toBeGreaterThan(first.uptime);
      await expectNoRcuStall(guest);
      await extra?.(guest);
      last = await stopCounters(guest, s.cpus);
      last.forEach((n, c) => expect(n).toBeGreaterThanOrEqual(later.counters[c]!));
      expect(await guest.end('poweroff -f')).toBe(0);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${guest.diagnostics()}`);
    } finally {
      guest.kill();
    }
    await expectDiskHolds(disk, s.cpus, last);
  }

  /** e2fsck -fn is clean and every log is 1..last without a gap. */
  async function expectDiskHolds(image: string, cpus: number, last: number[]): Promise<void> {
    await expectCleanExt4(image);
    for (let c = 0; c < cpus; c++) expectGaplessLog(await host('debugfs', ['-R', `cat /log${c}`, image]), last[c]!);
  }

  async function restoreCase(cpus: number, prefault: boolean): Promise<void> {
    const s = saved.get(cpus)!;
    const disk = join(dir, `case-${caseNo}.raw`);
    copyFileSync(s.disk, disk);
    const guest = await LinuxGuest.restore(s.snap, { apiSocket: join(dir, `case-${caseNo++}.sock`), prefault, diskPaths: { data: disk } });
    await continueAndFinish(guest, s, disk);
  }

  it('1 vCPU, lazy restore (memory mapped copy-on-write)', { timeout: CASE_TIMEOUT_MS }, async () => {
    await restoreCase(1, false);
  });

  it('1 vCPU, prefault restore', { timeout: CASE_TIMEOUT_MS }, async () => {
    await restoreCase(1, true);
  });

  it('2 vCPUs, prefault restore', { timeout: CASE_TIMEOUT_MS }, async () => {
    await restoreCase(2, true);
  });

  it('three clones at once from one snapshot, each on its own qcow2 overlay of the disk, each going on by itself', { timeout: CASE_TIMEOUT_MS }, async () => {
    const s = saved.get(2)!;
    const baseSha = sha256(s.disk);
    // Names unique per attempt: a retried attempt must not meet the files (and the image locks of
    // clones still being killed) of the one before.
    const attempt = cloneAttempt++;
    const overlays = [0, 1, 2].map((k) => join(dir, `clone-${attempt}-${k}.qcow2`));
    for (const o of overlays) await host('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', s.disk, '-F', 'raw', o]);
    // force=on: an overlay is a different file from the raw disk the snapshot recorded, but it
    // reads as exactly that disk (the base is unchanged and the overlay empty).
    const clones = await Promise.all(overlays.map((o, k) =>
      LinuxGuest.restore(s.snap, { apiSocket: join(dir, `clone-${attempt}-${k}.sock`), force: true, backingFiles: true, diskPaths: { data: o } })));
    // allSettled: a failing clone must not leave the others running into a retry.
    const results = await Promise.allSettled(clones.map((g, k) => continueAndFinishOverlay(g, s, overlays[k]!, k)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    expect(sha256(s.disk)).toBe(baseSha);
  });

  async function continueAndFinishOverlay(guest: LinuxGuest, s: Saved, overlay: string, k: number): Promise<void> {
    const flat = `${overlay}.flat.raw`;
    let last: number[];
    try {
      const first = await readProgress(guest, s.cpus);
      await waitForProgress(guest, s.cpus, first);
      await expectNoRcuStall(guest);
      await guest.ok(`echo clone-${k} > /mnt/who`);
      last = await stopCounters(guest, s.cpus);
      expect(await guest.end('poweroff -f')).toBe(0);
    } catch (e) {
      throw new Error(`clone ${k}: ${(e as Error).message}\n${guest.diagnostics()}`);
    } finally {
      guest.kill();
    }
    const check = await run('qemu-img', ['check', overlay]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    await host('qemu-img', ['convert', '-O', 'raw', overlay, flat]);
    expect(await host('debugfs', ['-R', 'cat /who', flat])).toBe(`clone-${k}\n`);
    await expectDiskHolds(flat, s.cpus, last);
  }
});
