/**
 * Snapshot and restore of a running Linux guest: pause → snapshot → kill the VMM → restore in a
 * new process → resume. A 1-vCPU and a 2-vCPU guest are booted once, each with one
 * counter loop per CPU appending to a log on an ext4 disk (support/linux-counters.ts), and
 * snapshotted while they count. Each case restores a snapshot and checks that time and interrupts
 * go on on every CPU, that the loops go on where they were, that no write was lost (the host
 * reads each log back: 1..N without a gap) and that the file system is clean afterwards.
 *
 * The SMP case repeats restore → run → snapshot → kill several times in a row: a 2-vCPU Linux
 * once came back from a restore with CPU 1 never running its tasks again (an RCU stall).
 */
import { copyFileSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LinuxGuest, BOOT_TIMEOUT_MS, removeScratch, scratchDir } from '../support/linux-guest.js';
import {
  expectGaplessLog, expectNoRcuStall, readProgress, startCounters, stopCounters, waitForProgress, type Progress,
} from '../support/linux-counters.js';
import { run } from '../support/tsvmm-process.js';

const CASE_TIMEOUT_MS = 420_000;
const SMP_CYCLES = 4;

const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

async function host(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

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
    saved.set(1, await bootAndSnapshot(1));
    saved.set(2, await bootAndSnapshot(2));
  }, 3 * BOOT_TIMEOUT_MS);

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
    const fsck = await run('e2fsck', ['-fn', image], { timeoutMs: 120_000 });
    expect(fsck.code, `e2fsck -fn:\n${fsck.stdout}${fsck.stderr}`).toBe(0);
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
    const overlays = [0, 1, 2].map((k) => join(dir, `clone-${k}.qcow2`));
    for (const o of overlays) await host('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', s.disk, '-F', 'raw', o]);
    // force=on: an overlay is a different file from the raw disk the snapshot recorded, but it
    // reads as exactly that disk (the base is unchanged and the overlay empty).
    const clones = await Promise.all(overlays.map((o, k) =>
      LinuxGuest.restore(s.snap, { apiSocket: join(dir, `clone-${k}.sock`), force: true, diskPaths: { data: o } })));
    await Promise.all(clones.map((g, k) => continueAndFinishOverlay(g, s, overlays[k]!, k)));
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

  it(`2 vCPUs, ${SMP_CYCLES} restore → run → snapshot → kill cycles in a row: both CPUs go on every time`, { timeout: CASE_TIMEOUT_MS + SMP_CYCLES * 120_000 }, async () => {
    const s = saved.get(2)!;
    const disk = join(dir, 'smp.raw');
    copyFileSync(s.disk, disk);
    let snap = s.snap;
    let at = s.at;
    for (let cycle = 1; cycle <= SMP_CYCLES; cycle++) {
      const guest = await LinuxGuest.restore(snap, { apiSocket: join(dir, `smp-${cycle}.sock`), diskPaths: { data: disk } });
      if (cycle === SMP_CYCLES) {
        await continueAndFinish(guest, { ...s, at }, disk);
        break;
      }
      try {
        const first = await readProgress(guest, 2);
        first.counters.forEach((n, c) => expect(n, `cycle ${cycle}, CPU ${c}`).toBeGreaterThanOrEqual(at.counters[c]!));
        await waitForProgress(guest, 2, first);
        await expectNoRcuStall(guest);
        at = await readProgress(guest, 2);
        snap = join(dir, `smp-snap-${cycle}`);
        await guest.snapshot(snap);
      } catch (e) {
        throw new Error(`cycle ${cycle}: ${(e as Error).message}\n${guest.diagnostics()}`);
      } finally {
        await guest.killHard();
      }
    }
  });
});
