/**
 * Disk snapshots on a running Linux guest (docs/disk-snapshots.md) while Linux writes to ext4: a
 * live external snapshot, a named checkpoint then a revert, and block-commit and block-pull. One
 * 1-vCPU guest is booted with an ext4 data disk and a counter loop appending to a log on it
 * (support/linux-counters.ts), then snapshotted; each case restores it on a fresh copy of the
 * disk. Afterwards the host checks the images with its own tools: `qemu-img check`, `e2fsck -fn`
 * on the chain flattened by `qemu-img convert`, and the log read back by debugfs must be 1..N
 * with no gap (no write lost across the switch of images).
 *
 * The live checkpoint case (vm.snapshot "live": true, "disks": true) adds mem-probe (built into
 * the initramfs) in the restored guest: it rewrites anonymous memory non-stop and reads a
 * read-only disk of known content with O_DIRECT, so the device writes those reads into guest RAM
 * itself; after a restore of the checkpoint it finds any write of either kind that the snapshot
 * missed, and the counter log on the disk checks the disk half as above.
 */
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LinuxGuest, BOOT_TIMEOUT_MS, removeScratch, scratchDir } from '../support/linux-guest.js';
import {
  expectGaplessLog, readProgress, startCounters, stopCounters, waitForProgress, MOUNT,
} from '../support/linux-counters.js';
import { apiOk, apiRequest, fileUrl } from '../support/snapshot-vm.js';
import { run } from '../support/tsvmm-process.js';
import { expectCleanExt4, sha256, host } from '../support/host-tools.js';
import { setupStep } from '../support/nested-retry.js';

const CASE_TIMEOUT_MS = 600_000;

interface Job { state?: string; finished?: unknown }

/** mem-probe's disk: the 8-byte word at byte offset o is o ^ DISK_KEY (mem-probe.c). */
const DISK_KEY = 0x4d454d50524f4245n;

function writeProbeDisk(path: string, bytes: number): void {
  const b = Buffer.alloc(bytes);
  for (let o = 0; o < bytes; o += 8) b.writeBigUInt64LE(BigInt(o) ^ DISK_KEY, o);
  writeFileSync(path, b);
}

/** mem-probe's log in the guest: its last completed pass, and any mismatch it reported. */
async function probeState(guest: LinuxGuest): Promise<{ pass: number; log: string }> {
  const log = await guest.ok('tail -n 3 /tmp/probe.log; grep MISMATCH /tmp/probe.log || true');
  const passes = [...log.matchAll(/^mem-probe: pass (\d+) ok$/gm)].map((m) => Number(m[1]));
  return { pass: passes.at(-1) ?? 0, log };
}

async function waitForProbe(guest: LinuxGuest, pass: number): Promise<string> {
  const giveUp = Date.now() + 120_000;
  for (;;) {
    const s = await probeState(guest);
    expect(s.log).not.toMatch(/MISMATCH|mem-probe:.*(error|usage)/);
    if (s.pass >= pass) return s.log;
    if (Date.now() > giveUp) throw new Error(`mem-probe did not reach pass ${pass}:\n${s.log}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

describe('disk snapshots while real Linux writes to ext4', () => {
  let dir: string;
  let snap: string;
  let golden: string;
  let caseNo = 0;

  beforeAll(async () => {
    dir = scratchDir('tsvmm-linux-disksnap-');
    golden = join(dir, 'golden.raw');
    await host('truncate', ['-s', '64M', golden]);
    const probeDisk = join(dir, 'probe.raw');
    writeProbeDisk(probeDisk, 16 * 1024 * 1024);
    snap = join(dir, 'snap');
    await setupStep('test/linux/disk-snapshots.test.ts', 'boot, start the writer, snapshot', async () => {
      const guest = await LinuxGuest.boot({ cpus: 1, memoryMiB: 256, apiSocket: join(dir, 'boot.sock'), disks: [`path=${golden},id=data`, `path=${probeDisk},id=probe,readonly=on`] });
      try {
        await startCounters(guest, 1);
        await guest.snapshot(snap);
      } finally {
        await guest.killHard();
      }
    });
  }, 4 * BOOT_TIMEOUT_MS);

  afterAll(() => removeScratch(dir));

  /**
   * Restores the snapshot on a fresh copy of the data disk; returns the guest, the copy, and a
   * prefix for the case's other files (unique per call, so a retried case starts clean).
   */
  async function restore(): Promise<{ guest: LinuxGuest; disk: string; sock: string; prefix: string }> {
    const n = caseNo++;
    const disk = join(dir, `case-${n}.raw`);
    copyFileSync(golden, disk);
    const sock = join(dir, `case-${n}.sock`);
    const guest = await LinuxGuest.restore(snap, { apiSocket: sock, diskPaths: { data: disk } });
    return { guest, disk, sock, prefix: join(dir, `case-${n}`) };
  }

  /** Lets the loop write a few more lines: the operation before this really happened mid-writes. */
  async function moreWrites(guest: LinuxGuest): Promise<void> {
    await waitForProgress(guest, 1, await readProgress(guest, 1));
  }

  /** Stops the writer, powers off, and checks the image the guest ended on. */
  async function finish(guest: LinuxGuest, sock: string): Promise<void> {
    const info = await apiOk(sock, 'GET', 'vm.info');
    const active = (info.json as { config: { disks: Array<{ path: string }> } }).config.disks[0]!.path;
    const [last] = await stopCounters(guest, 1);
    expect(await guest.end('poweroff -f')).toBe(0);
    const check = await run('qemu-img', ['check', active], { timeoutMs: 300_000 });
    if (/\.qcow2$/.test(active)) expect(check.code, `qemu-img check ${active}:\n${check.stdout}${check.stderr}`).toBe(0);
    const flat = `${active}.flat.raw`;
    await host('qemu-img', ['convert', '-O', 'raw', active, flat]);
    await expectCleanExt4(flat);
    expectGaplessLog(await host('debugfs', ['-R', `cat /log0`, flat]), last!);
  }

  async function waitJob(sock: string): Promise<Job> {
    for (;;) {
      const jobs = (await apiOk(sock, 'GET', 'vm.jobs')).json as Job[];
      const job = jobs.at(-1)!;
      if (job.finished !== undefined) return job;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  it('live external snapshot: the guest goes on writing into the overlay; the base is frozen', { timeout: CASE_TIMEOUT_MS }, async () => {
    const { guest, disk, sock, prefix } = await restore();
    try {
      await moreWrites(guest);
      const overlay = `${prefix}.live.s1.qcow2`;
      await apiOk(sock, 'PUT', 'vm.snapshot-disk', { disk: 'data', file: overlay });
      const frozen = sha256(disk);
      await moreWrites(guest);
      await finish(guest, sock);
      expect(sha256(disk), 'the frozen base changed after the snapshot').toBe(frozen);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${guest.diagnostics()}`);
    } finally {
      guest.kill();
    }
  });

  it('named checkpoint, a file written after it, revert: memory and disk are back, and writing goes on', { timeout: CASE_TIMEOUT_MS }, async () => {
    const { guest, sock } = await restore();
    try {
      await moreWrites(guest);
      await apiOk(sock, 'PUT', 'vm.snapshot-create', { name: 'S1' });
      await guest.ok(`echo after > ${MOUNT}/after; sync`);
      await apiOk(sock, 'PUT', 'vm.snapshot-revert', { name: 'S1' });
      // The guest is back at the checkpoint: the file written after it exists neither in its
      // page cache (memory reverted) nor on the disk (the disk reverted with it).
      const after = await guest.run(`cat ${MOUNT}/after`);
      expect(after.status, after.output).not.toBe(0);
      // The loop goes on from its count at the checkpoint, and the log on the reverted disk ends
      // there too: finish() finds 1..N without a gap or a repeat.
      await moreWrites(guest);
      await finish(guest, sock);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${guest.diagnostics()}`);
    } finally {
      guest.kill();
    }
  });

  it('block-commit, then block-pull, each while the guest writes: one image with every write', { timeout: CASE_TIMEOUT_MS }, async () => {
    const { guest, disk, sock, prefix } = await restore();
    try {
      await moreWrites(guest);
      await apiOk(sock, 'PUT', 'vm.snapshot-disk', { disk: 'data', file: `${prefix}.commit.top.qcow2` });
      await moreWrites(guest);
      await apiOk(sock, 'PUT', 'vm.block-commit', { disk: 'data' });
      const commit = await waitJob(sock);
      expect(commit.state, JSON.stringify(commit)).toBe('completed');
      const afterCommit = (await apiOk(sock, 'GET', 'vm.info')).json as { config: { disks: Array<{ path: string }> } };
      expect(afterCommit.config.disks[0]!.path).toBe(disk);

      await apiOk(sock, 'PUT', 'vm.snapshot-disk', { disk: 'data', file: `${prefix}.pull.top.qcow2` });
      await moreWrites(guest);
      await apiOk(sock, 'PUT', 'vm.block-pull', { disk: 'data' });
      const pull = await waitJob(sock);
      expect(pull.state, JSON.stringify(pull)).toBe('completed');
      await moreWrites(guest);
      await finish(guest, sock);
      const info = await run('qemu-img', ['info', `${prefix}.pull.top.qcow2`]);
      expect(info.stdout, 'block-pull leaves the top image without a backing file').not.toMatch(/backing file:/);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${guest.diagnostics()}`);
    } finally {
      guest.kill();
    }
  });
  it('live checkpoint (vm.snapshot live + disks) while mem-probe rewrites RAM and reads a disk by DMA and the loop writes ext4: the guest runs on, and the restore loses no write', { timeout: CASE_TIMEOUT_MS }, async () => {
    const { guest, sock: liveSock, prefix } = await restore();
    const ck = `${prefix}.live-ck`;
    let report: { live: boolean; pause_ms: number; converged: boolean; rounds: unknown[]; disks: Array<{ disk: string }> };
    try {
      // 32 MiB rewritten once per pass, a 64 KiB O_DIRECT read per MiB, 2 ms of sleep per MiB.
      await guest.ok('(mem-probe 32 /dev/vdb 2000 > /tmp/probe.log 2>&1 &)');
      const before = (await probeState(guest)).pass;
      await waitForProbe(guest, before + 2);
      await moreWrites(guest);
      const r = await apiRequest(liveSock, 'PUT', 'vm.snapshot', { destination_url: fileUrl(ck), live: true, disks: true });
      expect(r.status, r.body).toBe(200);
      report = r.json as typeof report;
      expect(report.live).toBe(true);
      expect(report.pause_ms).toBeGreaterThan(0);
      // Only the writable disk moves to an overlay; the read-only one is recorded as it is.
      expect(report.disks.map((d) => d.disk)).toEqual(['data']);
      // The original never stopped for the copy: it goes on probing and writing.
      await waitForProbe(guest, (await probeState(guest)).pass + 1);
      await moreWrites(guest);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${guest.diagnostics()}`);
    } finally {
      guest.kill();
    }
    const sock = `${prefix}-restored.sock`;
    const restored = await LinuxGuest.restore(ck, { apiSocket: sock });
    try {
      // Two whole passes after the restore: every page and every DMA slot checked at least once.
      await waitForProbe(restored, (await probeState(restored)).pass + 2);
      expect(await restored.ok('pidof mem-probe')).toMatch(/^\d+$/);
      await restored.ok('kill $(pidof mem-probe)');
      await moreWrites(restored);
      await finish(restored, sock);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${restored.diagnostics()}`);
    } finally {
      restored.kill();
    }
  });
});
