/**
 * Snapshot → kill → restore in a new process → resume, with the tiny kernel's counter and
 * memory-verify workloads: the guest must continue where it stopped (no reboot, no corrupted
 * memory), clones must not touch the snapshot, and snapshots must be as small as the memory used.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  apiOk, apiRequest, bootTiny, diskUsageBytes, fileUrl, fingerprintDir, killHard, memtestPassesIn,
  pauseAndSnapshot, restoreProcess, ticksIn, waitForApi,
} from '../support/snapshot-vm.js';
import { TsvmmProcess, remoteBin, run } from '../support/tsvmm-process.js';
import { deadline } from '../support/timing.js';

const MiB = 1024 * 1024;
const WORKLOAD = 'tiny.ticks tiny.tick_ms=50 tiny.memtest=32 tiny.memtest_loop';

let root: string;
/** The running test's own directory (a fresh one per attempt, so a retried test starts clean). */
let work: string;
const live: TsvmmProcess[] = [];
const track = (p: TsvmmProcess): TsvmmProcess => { live.push(p); return p; };

beforeAll(() => { root = mkdtempSync(join(tmpdir(), 'tsvmm-snap-it-')); });
beforeEach(() => { work = mkdtempSync(join(root, 'case-')); });
afterAll(async () => {
  await Promise.all(live.map((p) => killHard(p)));
  rmSync(root, { recursive: true, force: true });
});

interface PausedPoint {
  /** Console output up to the pause (may end in the middle of a line). */
  console: string;
  lastTick: number;
  lastAp: number | undefined;
  lastPass: number;
}

/** Boots WORKLOAD, lets it run a few ticks and memtest passes, snapshots to `dir`, then kill -9. */
async function snapshotRunningWorkload(name: string, cpus: number, dir: string): Promise<PausedPoint> {
  const sock = join(work, `${name}.sock`);
  const vm = track(await bootTiny({ cpus, memory: '256M', cmdline: WORKLOAD, socketPath: sock }));
  await vm.waitFor(/^memtest: pass 2 ok$/m, deadline(60_000));
  await vm.waitFor(/^tick 3\b/m, deadline(30_000));
  const { consoleAtPause } = await pauseAndSnapshot(vm, sock, dir);
  await killHard(vm);
  // Nothing may run between the pause and the kill.
  expect(vm.stdout).toBe(consoleAtPause);
  expect(consoleAtPause).not.toMatch(/FAILED/);
  const ticks = ticksIn(consoleAtPause);
  const passes = memtestPassesIn(consoleAtPause);
  const last = ticks.at(-1)!;
  if (cpus > 1) expect(last.ap).toBeGreaterThan(0);
  return { console: consoleAtPause, lastTick: last.n, lastAp: last.ap, lastPass: passes.at(-1)! };
}

/**
 * Resumes a restored (paused) VM, or checks that the restore resumed it (`resumedByRestore`), and checks
 * it continues from `at` without a restart.
 */
async function resumeAndCheckContinues(vm: TsvmmProcess, sock: string, at: PausedPoint, cpus: number, resumedByRestore = false): Promise<void> {
  const info = await apiOk(sock, 'GET', 'vm.info');
  if (resumedByRestore) {
    expect((info.json as { state: string }).state).toBe('Running');
  } else {
    expect((info.json as { state: string }).state).toBe('Paused');
    // Paused means paused: no guest output before resume.
    await new Promise((r) => setTimeout(r, 200));
    expect(vm.stdout).toBe('');
    await apiOk(sock, 'PUT', 'vm.resume');
  }
  await vm.waitFor(new RegExp(`^tick ${at.lastTick + 3}\\b`, 'm'), deadline(30_000));
  await vm.waitFor(new RegExp(`^memtest: pass ${at.lastPass + 2} ok$`, 'm'), deadline(60_000));
  // The pause may have cut a line in two: judge the whole console, before and after.
  const whole = at.console + vm.stdout;
  expect(vm.stdout).not.toMatch(/tiny: boot/);
  expect(whole.match(/tiny: boot/g)).toHaveLength(1);
  expect(whole).not.toMatch(/FAILED/);
  const ticks = ticksIn(whole);
  ticks.forEach((t, i) => expect(t.n).toBe(ticks[0]!.n + i));
  const passes = memtestPassesIn(whole);
  passes.forEach((p, i) => expect(p).toBe(passes[0]! + i));
  const resumed = ticks.filter((t) => t.n > at.lastTick);
  expect(resumed[0]!.n).toBe(at.lastTick + 1);
  if (cpus > 1) {
    // The AP's counter lives in guest memory: it continues from where it was (never restarts
    // from zero) and keeps counting. The first tick may come before the AP thread gets a turn
    // on a loaded host, so progress is judged at the last tick seen.
    expect(resumed[0]!.ap).toBeGreaterThanOrEqual(at.lastAp!);
    expect(resumed.at(-1)!.ap).toBeGreaterThan(at.lastAp!);
  }
}

describe('snapshot → kill -9 → restore in a new process → resume', () => {
  for (const cpus of [1, 2]) {
    for (const prefault of [false, true]) {
      it(`${cpus} vCPU${cpus > 1 ? 's' : ''}, ${prefault ? 'prefault=on' : 'lazy (MAP_PRIVATE)'}: ticks and memtest continue`, async () => {
        const name = `cont-${cpus}-${prefault ? 'pf' : 'lazy'}`;
        const dir = join(work, name);
        const at = await snapshotRunningWorkload(name, cpus, dir);
        const sock = join(work, `${name}-r.sock`);
        const restored = track(await restoreProcess(dir, sock, prefault ? ',prefault=on' : ''));
        await resumeAndCheckContinues(restored, sock, at, cpus);
        await killHard(restored);
      }, deadline(180_000));
    }
  }

  it('vm.restore on an empty VMM with the body ch-remote sends (Copy, resume: true) continues the guest, which no longer needs the memory file', async () => {
    const dir = join(work, 'warm');
    const at = await snapshotRunningWorkload('warm', 2, dir);
    const sock = join(work, 'warm-r.sock');
    const empty = track(new TsvmmProcess(['--api-socket', sock]));
    await waitForApi(sock, empty);
    await apiOk(sock, 'PUT', 'vm.restore', { source_url: fileUrl(dir), prefault: false, memory_restore_mode: 'Copy', net_fds: null, resume: true });
    // Copy read guest memory into fresh RAM: the snapshot's memory file may go away.
    rmSync(join(dir, 'memory-region-0'));
    await resumeAndCheckContinues(empty, sock, at, 2, true);
    await killHard(empty);
  }, deadline(180_000));

  it('vm.snapshot on a running VM is refused with 400 and writes nothing', async () => {
    const sock = join(work, 'running.sock');
    const vm = track(await bootTiny({ cpus: 1, memory: '128M', cmdline: 'tiny.ticks tiny.tick_ms=50', socketPath: sock }));
    await vm.waitFor(/^tick 1\b/m);
    const dir = join(work, 'never');
    const r = await apiRequest(sock, 'PUT', 'vm.snapshot', { destination_url: fileUrl(dir) });
    expect(r.status).toBe(400);
    const err = (r.json as { error: { code: string; message: string } }).error;
    expect(err.code).toBe('EINVALIDSTATE');
    expect(err.message).toMatch(/must be paused.*vm\.pause/);
    expect(readdirSync(work).filter((n) => n.startsWith('never'))).toEqual([]);
    // The VM was not disturbed.
    const ticksBefore = ticksIn(vm.stdout).length;
    await vm.waitFor(new RegExp(`^tick ${ticksBefore + 1}\\b`, 'm'));
    await killHard(vm);
  }, deadline(120_000));
});

interface LiveReport {
  live: true; pause_ms: number; pause_phases: Record<string, number>; total_ms: number; final_pages: number; converged: boolean;
  rounds: Array<{ pages: number; bytes: number; ms: number }>; memory_bytes_written: number;
}

/**
 * A live snapshot of the running `vm`, by raw HTTP (vm.snapshot with "live": true: the answer is
 * 200 with the report) or by `tsvmm-remote --json snapshot DIR --live`; the guest runs on (a tick
 * it had not printed yet comes after the answer).
 */
async function liveSnapshot(vm: TsvmmProcess, sock: string, dir: string, via: 'http' | 'tsvmm-remote'): Promise<LiveReport> {
  let report: LiveReport;
  if (via === 'http') {
    const r = await apiRequest(sock, 'PUT', 'vm.snapshot', { destination_url: fileUrl(dir), live: true });
    expect(r.status, r.body).toBe(200);
    report = r.json as LiveReport;
  } else {
    const r = await run(process.execPath, [remoteBin, '--api-socket', sock, '--json', 'snapshot', dir, '--live'], { timeoutMs: deadline(120_000) });
    expect(r.code, r.stderr).toBe(0);
    report = JSON.parse(r.stdout) as LiveReport;
  }
  expect(report.live).toBe(true);
  expect(report.pause_ms).toBeGreaterThan(0);
  expect(report.pause_ms).toBeLessThan(report.total_ms);
  expect(report.rounds.length).toBeGreaterThanOrEqual(1);
  expect(report.rounds[0]!.bytes).toBeGreaterThanOrEqual(16 * MiB);
  console.log(`live snapshot of ${dir}: guest paused ${report.pause_ms.toFixed(1)} ms (${report.final_pages} pages; ${Object.entries(report.pause_phases).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}), rounds ${report.rounds.map((x) => `${x.pages}p/${x.ms.toFixed(0)}ms`).join(' ')}, converged ${report.converged}, total ${report.total_ms.toFixed(0)} ms`);
  expect((await apiOk(sock, 'GET', 'vm.info')).json).toMatchObject({ state: 'Running' });
  const seen = ticksIn(vm.stdout).at(-1)!.n;
  await vm.waitFor(new RegExp(`^tick ${seen + 2}\\b`, 'm'), deadline(30_000));
  return report;
}

/**
 * Restores `dir` in a new process and checks the guest goes on from the snapshot's instant: no
 * reboot, ticks without a gap from a tick the original printed around the snapshot, and three
 * more memtest passes (each checks every word of the region).
 */
async function restoreAndCheckLive(dir: string, sock: string, original: string): Promise<void> {
  const restored = track(await restoreProcess(dir, sock));
  await apiOk(sock, 'PUT', 'vm.resume');
  // A lost write shows as "verify FAILED" at the next pass: wait for that too, not only for success.
  const passOrFail = (n: string): RegExp => new RegExp(`^memtest: (?:pass ${n} ok|verify FAILED.*)$`, 'm');
  expect((await restored.waitFor(passOrFail('\\d+'), deadline(60_000)))[0]).not.toMatch(/FAILED/);
  const firstPass = memtestPassesIn(restored.stdout)[0]!;
  expect((await restored.waitFor(passOrFail(String(firstPass + 2)), deadline(90_000)))[0]).not.toMatch(/FAILED/);
  expect(restored.stdout).not.toMatch(/tiny: boot|FAILED/);
  const ticks = ticksIn(restored.stdout);
  ticks.forEach((t, i) => expect(t.n).toBe(ticks[0]!.n + i));
  // The snapshot's instant lies between two ticks the original printed.
  expect(ticksIn(original).some((t) => t.n === ticks[0]!.n - 1)).toBe(true);
  await killHard(restored);
}

describe('live snapshots (vm.snapshot "live": true): the guest runs while its memory is copied', () => {
  it('a 2-vCPU guest rewriting 16 MiB non-stop: it keeps running, and its restore finds every word of the generation it was writing', async () => {
    const sock = join(work, 'busy.sock');
    const cmdline = 'tiny.ticks tiny.tick_ms=50 tiny.memtest=16 tiny.memtest_loop tiny.memtest_rewrite';
    const vm = track(await bootTiny({ cpus: 2, memory: '256M', cmdline, socketPath: sock }));
    await vm.waitFor(/^memtest: pass 1 ok$/m, deadline(60_000));
    await vm.waitFor(/^tick 3\b/m, deadline(30_000));
    const dir = join(work, 'busy');
    const report = await liveSnapshot(vm, sock, dir, 'http');
    // It never stops dirtying: either the rounds caught up with it or it was paused after the last.
    if (!report.converged) expect(report.rounds.length).toBeGreaterThan(1);
    const passes = memtestPassesIn(vm.stdout).at(-1)!;
    await vm.waitFor(new RegExp(`^memtest: pass ${passes + 1} ok$`, 'm'), deadline(60_000));
    expect(vm.stdout).not.toMatch(/FAILED/);
    const original = vm.stdout;
    await killHard(vm);
    await restoreAndCheckLive(dir, join(work, 'busy-r.sock'), original);
  }, deadline(240_000));

  it('a guest that only reads its memory converges: a short pause for a few pages; the restore goes on', async () => {
    const sock = join(work, 'quiet.sock');
    const vm = track(await bootTiny({ cpus: 1, memory: '256M', cmdline: WORKLOAD, socketPath: sock }));
    await vm.waitFor(/^memtest: pass 2 ok$/m, deadline(60_000));
    const dir = join(work, 'quiet');
    const report = await liveSnapshot(vm, sock, dir, 'tsvmm-remote');
    expect(report.converged).toBe(true);
    // The ticks and the verify loop's stack write a handful of pages between rounds.
    expect(report.final_pages).toBeLessThan(1024);
    const original = vm.stdout;
    await killHard(vm);
    await restoreAndCheckLive(dir, join(work, 'quiet-r.sock'), original);
  }, deadline(180_000));
});

describe('clones', () => {
  it('three clones restored at once from one snapshot all run, and the snapshot is untouched', async () => {
    const dir = join(work, 'clone-src');
    const at = await snapshotRunningWorkload('clone-src', 2, dir);
    const before = await fingerprintDir(dir);
    expect([...before.keys()]).toEqual(['memory-region-0', 'vm.json']);

    const clones = await Promise.all([0, 1, 2].map(async (i) => {
      const sock = join(work, `clone-${i}.sock`);
      return { sock, vm: track(await restoreProcess(dir, sock)) };
    }));
    const pids = new Set(await Promise.all(clones.map(async (c) => ((await apiOk(c.sock, 'GET', 'vmm.ping')).json as { pid: number }).pid)));
    expect(pids.size).toBe(3);
    await Promise.all(clones.map((c) => resumeAndCheckContinues(c.vm, c.sock, at, 2)));
    await Promise.all(clones.map((c) => killHard(c.vm)));

    const after = await fingerprintDir(dir);
    expect([...after.keys()]).toEqual([...before.keys()]);
    for (const [name, f] of before) {
      const g = after.get(name)!;
      expect({ name, sha256: g.sha256, size: g.size, mtimeNs: g.mtimeNs, ino: g.ino }).toEqual({ name, ...f });
    }
  }, deadline(240_000));
});

describe('snapshot size and replacement', () => {
  it('a 1 GiB VM makes a snapshot as large as the memory it uses, not its RAM size', async () => {
    const results: Array<{ touched: number; du: number; ms: number }> = [];
    for (const touched of [0, 128]) {
      const name = `size-${touched}`;
      const sock = join(work, `${name}.sock`);
      const cmdline = touched === 0 ? 'tiny.ticks tiny.tick_ms=50' : `tiny.memtest=${touched} tiny.ticks tiny.tick_ms=50`;
      const vm = track(await bootTiny({ cpus: 1, memory: '1G', cmdline, socketPath: sock }));
      if (touched > 0) await vm.waitFor(/^memtest: verify ok/m, deadline(60_000));
      await vm.waitFor(/^tick 1\b/m);
      const dir = join(work, name);
      const { snapshotMs } = await pauseAndSnapshot(vm, sock, dir);
      await killHard(vm);
      const files = await fingerprintDir(dir);
      expect(files.get('memory-region-0')!.size).toBe(1024 * MiB);
      results.push({ touched, du: await diskUsageBytes(dir), ms: snapshotMs });
    }
    console.log(`snapshot of a 1 GiB VM: ${results.map((r) => `${r.touched} MiB touched → ${(r.du / MiB).toFixed(1)} MiB on disk in ${r.ms.toFixed(0)} ms`).join('; ')}`);
    const [idle, busy] = results as [typeof results[0], typeof results[0]];
    expect(idle.du).toBeLessThan(8 * MiB);
    expect(busy.du).toBeGreaterThanOrEqual(128 * MiB);
    expect(busy.du).toBeLessThan(128 * MiB + 8 * MiB);
  }, deadline(300_000));

  it('re-snapshotting into the same directory replaces it whole, and a kill -9 mid-write leaves a restorable snapshot', async () => {
    const name = 'replace';
    const sock = join(work, `${name}.sock`);
    const dir = join(work, name);
    // 512 MiB of data makes the write long enough to kill the VMM in the middle of it.
    const vm = track(await bootTiny({ cpus: 1, memory: '1G', cmdline: 'tiny.memtest=512 tiny.ticks tiny.tick_ms=50', socketPath: sock }));
    await vm.waitFor(/^memtest: verify ok/m, deadline(120_000));
    await vm.waitFor(/^tick 2\b/m);
    const first = await pauseAndSnapshot(vm, sock, dir);
    const firstTick = ticksIn(first.consoleAtPause).at(-1)!.n;

    await apiOk(sock, 'PUT', 'vm.resume');
    await vm.waitFor(new RegExp(`^tick ${firstTick + 3}\\b`, 'm'));
    const second = await pauseAndSnapshot(vm, sock, dir);
    const secondTick = ticksIn(second.consoleAtPause).at(-1)!.n;
    expect(secondTick).toBeGreaterThan(firstTick);
    const siblings = () => readdirSync(dirname(dir)).filter((n) => /^replace\.(tmp|old)-/.test(n));
    expect(siblings()).toEqual([]);
    expect(readdirSync(dir).sort()).toEqual(['memory-region-0', 'vm.json']);

    // Third write, killed halfway: the directory must still hold the second snapshot, whole.
    await apiOk(sock, 'PUT', 'vm.resume');
    await vm.waitFor(new RegExp(`^tick ${secondTick + 3}\\b`, 'm'));
    await apiOk(sock, 'PUT', 'vm.pause');
    const thirdConsole = vm.stdout;
    const pending = apiRequest(sock, 'PUT', 'vm.snapshot', { destination_url: fileUrl(dir) }).catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, Math.max(20, second.snapshotMs / 3)));
    await killHard(vm);
    const outcome = await pending;
    const completed = !(outcome instanceof Error) && outcome.status === 204;

    const rsock = join(work, `${name}-r.sock`);
    const restored = track(await restoreProcess(dir, rsock));
    await apiOk(rsock, 'PUT', 'vm.resume');
    await restored.waitFor(/^tick \d+\n(.|\n)*^tick \d+\n/m);
    // Which snapshot came back: the console up to its pause, continued by the restored guest,
    // must count on without a gap (a pause may split a line, hence the concatenation).
    const continues = (before: string): boolean => {
      const ticks = ticksIn(before + restored.stdout);
      const last = ticksIn(before).at(-1)!.n;
      return ticks.every((t, i) => t.n === ticks[0]!.n + i) && ticks.some((t) => t.n === last + 1);
    };
    // Killed before the commit: the old (second) snapshot. A write that answered 204 committed
    // the third; one killed between its commit rename and its answer may show either, whole.
    if (completed) expect(continues(thirdConsole)).toBe(true);
    else expect(continues(second.consoleAtPause) || continues(thirdConsole)).toBe(true);
    expect(restored.stdout).not.toMatch(/tiny: boot|FAILED/);
    console.log(`kill -9 during a ${second.snapshotMs.toFixed(0)} ms snapshot write: ${completed ? 'the write had completed' : 'old snapshot intact'}; leftovers: ${siblings().join(', ') || 'none'}`);
    await killHard(restored);
  }, deadline(300_000));
});

/** The guest's LBA pattern (guest-images/src/blk.c): the u64 at disk offset o is o ^ KEY. */
function blkPattern(bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let o = 0; o < bytes; o += 8) b.writeBigUInt64LE(BigInt(o) ^ 0x594e495400000000n, o);
  return b;
}

describe('snapshot while the guest disk workload runs', () => {
  it('restore, resume: the workload completes with the right checksum and the disk holds the pattern', async () => {
    const name = 'blk';
    const sock = join(work, `${name}.sock`);
    const diskPath = join(work, 'blk.raw');
    const MIB = 16;
    writeFileSync(diskPath, Buffer.alloc(64 * MiB));
    // Several passes so the pause lands while requests are being issued and completed.
    const ops = Array.from({ length: 6 }, () => `write:${MIB},read:${MIB}`).join(',');
    const vm = track(await bootTiny({ cpus: 1, memory: '128M', cmdline: `tiny.blk=${ops} tiny.exit=0`, socketPath: sock, disks: [`path=${diskPath},id=disk0`] }));
    await vm.waitFor(/^blk: write \d+ MiB ok crc=/m, deadline(60_000));
    const dir = join(work, name);
    const { consoleAtPause } = await pauseAndSnapshot(vm, sock, dir);
    await killHard(vm);
    const doneBefore = (consoleAtPause.match(/^blk: (write|read) /gm) ?? []).length;
    // The pause must have come before the end of the workload, or this test proves nothing.
    expect(doneBefore, consoleAtPause).toBeLessThan(12);

    const rsock = join(work, `${name}-r.sock`);
    const restored = track(await restoreProcess(dir, rsock));
    await apiOk(rsock, 'PUT', 'vm.resume');
    // tiny.exit=0: the guest powers off when the workload is done, and tsvmm exits.
    const exit = await Promise.race([restored.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), deadline(60_000)))]);
    expect(exit, restored.stderr).toEqual({ code: 0, signal: null });
    const whole = consoleAtPause + restored.stdout;
    expect(whole).toMatch(/^tiny: exit 0$/m);
    expect(whole).not.toMatch(/FAILED|timeout|ioerr|bad status|unsupp/);
    expect(restored.stdout).not.toMatch(/tiny: boot/);
    const results = [...whole.matchAll(/^blk: (write|read) (\d+) MiB (?:ok )?crc=([0-9a-f]{8})$/gm)];
    expect(results).toHaveLength(12);
    const expectedCrc = (crc32(blkPattern(MIB * MiB)) >>> 0).toString(16).padStart(8, '0');
    for (const r of results) expect(r[3]).toBe(expectedCrc);
    expect(readFileSync(diskPath).subarray(0, MIB * MiB).equals(blkPattern(MIB * MiB))).toBe(true);
  }, deadline(240_000));
});
