/**
 * Counter loops for restore tests: one shell loop pinned to each guest CPU (busybox taskset),
 * each appending its count to a log on an ext4 disk and keeping the latest count in /tmp. A
 * restored guest that goes on counting on every CPU, with every local timer interrupt count
 * growing, has working time and interrupts on each CPU; a log holding 1..N with no gap lost no
 * write across the restores.
 */
import { expect } from 'vitest';
import { localTimerInterrupts, type LinuxGuest } from './linux-guest.js';

/** Where the disk with the logs is mounted in the guest. */
export const MOUNT = '/mnt';

export interface Progress {
  counters: number[];
  loc: number[];
  uptime: number;
}

/** Starts the loops (the disk at `dev` gets a new ext4 file system, mounted at MOUNT). */
export async function startCounters(guest: LinuxGuest, cpus: number, dev = '/dev/vda'): Promise<void> {
  await guest.ok(`mkfs.ext4 -q -F ${dev} && mount -t ext4 ${dev} ${MOUNT}`);
  for (let c = 0; c < cpus; c++) {
    // taskset execs the loop's shell, so $! is the loop itself (stopCounters kills it).
    await guest.ok(`taskset -c ${c} sh -c 'i=0; while :; do i=$((i+1)); echo $i >> ${MOUNT}/log${c}; echo $i > /tmp/cpu${c}; usleep 100000; done' & echo $! > /tmp/loop${c}.pid`);
  }
  await waitForProgress(guest, cpus, await readProgress(guest, cpus), 120_000);
}

/** The latest count of each loop, each CPU's local timer interrupts, and the guest's uptime. */
export async function readProgress(guest: LinuxGuest, cpus: number): Promise<Progress> {
  const files = Array.from({ length: cpus }, (_, c) => `/tmp/cpu${c}`).join(' ');
  for (let attempt = 0; ; attempt++) {
    const out = await guest.ok(`cat ${files}; cat /proc/uptime; cat /proc/interrupts`);
    const lines = out.split('\n');
    // A read can land between a loop's truncation of its file and its write: read again then.
    const counters = lines.slice(0, cpus).map((l) => (/^\d+$/.test(l) ? Number(l) : NaN));
    const uptime = Number(lines[cpus]!.split(' ')[0]);
    if (counters.every(Number.isFinite)) {
      return { counters, loc: localTimerInterrupts(lines.slice(cpus + 1).join('\n')).slice(0, cpus), uptime };
    }
    if (attempt === 5) throw new Error(`unreadable counters:\n${out}`);
  }
}

/**
 * Waits until every loop has counted at least 3 more and every CPU has taken at least 2 more
 * local timer interrupts than in `from` (polling; a liveness condition, not a time limit: the
 * deadline only bounds a guest that stopped), and returns the progress then.
 */
export async function waitForProgress(guest: LinuxGuest, cpus: number, from: Progress, deadlineMs = 90_000): Promise<Progress> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const now = await readProgress(guest, cpus);
    const moved = now.counters.every((n, c) => n >= from.counters[c]! + 3) && now.loc.every((n, c) => n >= from.loc[c]! + 2);
    if (moved) return now;
    if (Date.now() > deadline) {
      const dmesg = await guest.run('dmesg | tail -n 20');
      throw new Error(`not every CPU made progress: from ${JSON.stringify(from)} to ${JSON.stringify(now)}\n${dmesg.output}`);
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** The kernel log has no RCU stall report (a CPU that stopped running its tasks). */
export async function expectNoRcuStall(guest: LinuxGuest): Promise<void> {
  const stalls = await guest.run('dmesg | grep -i "rcu.*stall"');
  expect(stalls.output, 'RCU stall reported by the guest').toBe('');
}

/**
 * Stops the loops and unmounts the disk so the host can check it; returns each loop's last count.
 */
export async function stopCounters(guest: LinuxGuest, cpus: number): Promise<number[]> {
  const pids = Array.from({ length: cpus }, (_, c) => `$(cat /tmp/loop${c}.pid)`).join(' ');
  // The loops are this shell's background jobs (also in a restored guest: it is the same shell).
  await guest.ok(`kill ${pids}; wait; true`);
  const last = (await guest.ok(Array.from({ length: cpus }, (_, c) => `tail -n 1 ${MOUNT}/log${c}`).join('; '))).split('\n').map(Number);
  await guest.ok(`sync; umount ${MOUNT}`);
  return last;
}

/** A log read back by the host: must be exactly 1, 2, …, last. */
export function expectGaplessLog(text: string, last: number): void {
  const lines = text.trimEnd().split('\n').map(Number);
  expect(lines.length).toBe(last);
  const firstGap = lines.findIndex((n, i) => n !== i + 1);
  expect(firstGap, `log breaks at line ${firstGap + 1}: ${lines.slice(Math.max(0, firstGap - 2), firstGap + 3).join(',')}`).toBe(-1);
}
