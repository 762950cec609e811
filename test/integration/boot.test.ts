/**
 * End-to-end boots of the tiny kernel under tsvmm on /dev/kvm: both kernel formats, 1 and 2
 * vCPUs, RAM below and above 4 GiB, and every way a VM can end (power-off status, reset, a guest
 * exception, SIGTERM, SIGINT) mapped to its documented exit status (src/vmm/exit-status.ts).
 * Memtest sizes stay small: first-touching guest RAM costs ~6 ms per MiB on the PVM test host.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT_STATUS } from '../../src/vmm/exit-status.js';
import { consoleLines, parseBanner, parseTicks, runTsvmm } from '../support/tiny-console.js';
import { TsvmmProcess, tinyBzImage, tinyElf } from '../support/tsvmm-process.js';
import { deadline } from '../support/timing.js';

const formats = [
  { name: 'tiny.elf (PVH)', kernel: tinyElf, boot: 'pvh' },
  { name: 'tiny.bzImage (64-bit boot protocol)', kernel: tinyBzImage, boot: 'linux' },
] as const;

describe('tsvmm boots the tiny kernel', () => {
  describe.each(formats)('$name', ({ kernel, boot }) => {
    it.each([1, 2])('%i vCPU(s), 128 MiB: banner, ticks, memtest and the power-off status', async (cpus) => {
      const cmdline = 'tiny.ticks=4 tiny.tick_ms=50 tiny.memtest=16 tiny.exit=7';
      const r = await runTsvmm(['--serial', 'tty', '--kernel', kernel, '--cpus', `boot=${cpus}`, '--memory', 'size=128M', '--cmdline', cmdline]);
      const banner = parseBanner(r.lines[0]);
      // tsvmm appends a virtio_mmio.device= entry per virtio device (here the rng).
      expect(banner).toEqual({ boot, cpus, memMiB: 128, cmdline: expect.stringMatching(new RegExp(`^${cmdline}( virtio_mmio\\.device=\\S+)+$`)) });

      if (cpus === 2) {
        expect(r.lines).toContain('tiny: cpu1 up');
      } else {
        expect(r.lines.some((l) => /^tiny: cpu\d+ up$/.test(l))).toBe(false);
      }

      const ticks = parseTicks(r.lines);
      expect(ticks.map((t) => t.n)).toEqual([1, 2, 3, 4]);
      if (cpus === 2) {
        // The AP had counted before the first tick and its sum never goes back. (It may stand still
        // between two ticks: the host can deschedule a vCPU thread for hundreds of ms — QEMU's AP
        // stalls the same way here; growth over time is checked by 'the AP keeps counting'.)
        const ap = ticks.map((t) => t.ap);
        expect(ap.every((v) => v !== undefined)).toBe(true);
        expect(ap[0]! > 0n).toBe(true);
        for (let i = 1; i < ap.length; i++) expect(ap[i]! >= ap[i - 1]!).toBe(true);
      } else {
        expect(ticks.every((t) => t.ap === undefined)).toBe(true);
      }

      expect(r.lines).toContain('memtest: filled 16 MiB');
      expect(r.lines).toContain('memtest: verify ok 16 MiB');
      expect(r.lines.at(-1)).toBe('tiny: exit 7');
      expect(r.code).toBe(7);
      expect(r.stderr).toBe('tsvmm: guest powered off with status 7\n');
    });

    it('2 vCPUs: the AP keeps counting while the BSP ticks', async () => {
      const p = new TsvmmProcess(['--serial', 'tty', '--kernel', kernel, '--cpus', 'boot=2', '--memory', 'size=128M', '--cmdline', 'tiny.ticks tiny.tick_ms=50']);
      try {
        await p.waitFor(/^tiny: cpu1 up$/m);
        const first = BigInt((await p.waitFor(/^tick 1 ap=(\d+)$/m))[1]!);
        // Up to 10 s of ticks for the sum to move: a stalled AP vCPU fails here.
        let grown = false;
        for (let n = 2; n <= 200 && !grown; n++) {
          grown = BigInt((await p.waitFor(new RegExp(`^tick ${n} ap=(\\d+)$`, 'm')))[1]!) > first;
        }
        expect(grown).toBe(true);
      } finally {
        p.kill();
      }
    });
  });

  it('5 GiB of RAM (a region below the 32-bit hole and one above 4 GiB) is reported in full and the high region holds data', async () => {
    // memtest_from=4096: the 16 MiB tested all lie above 4 GiB, in memory-region-1.
    const r = await runTsvmm(['--serial', 'tty', '--kernel', tinyElf, '--cpus', 'boot=2', '--memory', 'size=5G', '--cmdline', 'tiny.memtest=16 tiny.memtest_from=4096 tiny.exit=0']);
    const banner = parseBanner(r.lines[0]);
    expect(banner.memMiB).toBe(5 * 1024);
    expect(banner.cpus).toBe(2);
    expect(r.lines).toContain('memtest: verify ok 16 MiB');
    expect(r.lines.at(-1)).toBe('tiny: exit 0');
    expect(r.code).toBe(0);
  });

  it('without RAM above 4 GiB, a memtest there finds none (the high-region test above is real)', async () => {
    const r = await runTsvmm(['--serial', 'tty', '--kernel', tinyElf, '--memory', 'size=3G', '--cmdline', 'tiny.memtest=16 tiny.memtest_from=4096 tiny.exit=0']);
    expect(r.lines).toContain('memtest: not enough free RAM: 0 MiB available');
    expect(r.code).toBe(1);
  });

  it.each([0, 42, 255])('guest power-off status %i becomes the exit status', async (status) => {
    const r = await runTsvmm(['--serial', 'tty', '--kernel', tinyElf, '--memory', 'size=128M', '--cmdline', `tiny.exit=${status}`]);
    expect(r.lines.at(-1)).toBe(`tiny: exit ${status}`);
    expect(r.code).toBe(status);
    expect(r.stderr).toBe(`tsvmm: guest powered off with status ${status}\n`);
  });

  it('a guest reset through the i8042 ends tsvmm with status 120', async () => {
    const r = await runTsvmm(['--serial', 'tty', '--kernel', tinyElf, '--memory', 'size=128M', '--cmdline', 'tiny.reset tiny.exit=9']);
    expect(r.lines.at(-1)).toBe('tiny: reset');
    expect(r.code).toBe(EXIT_STATUS.reset);
    expect(r.code).toBe(120);
    expect(r.stderr).toBe('tsvmm: guest requested a reset\n');
  });

  // tiny.fault raises the exception in ring 3; the guest's handler prints a report and powers off
  // with status 3 (guest-images/src/ring0.c exception_report), which tsvmm passes through.
  it.each([
    { kind: 'ud', vector: 6, extra: /err=0x0 / },
    { kind: 'pf', vector: 14, extra: /cr2=0x8000000000 / },
  ])('tiny.fault=$kind: the guest reports exception $vector and powers off with status 3', async ({ kind, vector, extra }) => {
    const r = await runTsvmm(['--serial', 'tty', '--kernel', tinyElf, '--memory', 'size=128M', '--cmdline', `tiny.fault=${kind} tiny.exit=0`]);
    expect(r.lines).toContain('tiny: raising a fault');
    const report = r.lines.find((l) => l.startsWith('tiny: exception '));
    expect(report).toMatch(new RegExp(`^tiny: exception ${vector} rip=0x[0-9a-f]+ `));
    expect(report).toMatch(extra);
    expect(report).toMatch(/ cs=0x23 /); // it happened in ring 3 (user code selector, RPL 3)
    expect(r.code).toBe(3);
  });

  it.each([
    { signal: 'SIGTERM' as const, cpus: 1, status: EXIT_STATUS.SIGTERM },
    { signal: 'SIGINT' as const, cpus: 2, status: EXIT_STATUS.SIGINT },
  ])('$signal on a ticking guest with $cpus vCPU(s) ends tsvmm with status $status', async ({ signal, cpus, status }) => {
    const p = new TsvmmProcess(['--serial', 'tty', '--kernel', tinyElf, '--cpus', `boot=${cpus}`, '--memory', 'size=128M', '--cmdline', 'tiny.ticks tiny.tick_ms=20']);
    try {
      await p.waitFor(/^tick 3\b/m);
      p.child.kill(signal);
      const ended = await Promise.race([
        p.exited,
        new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), deadline(10_000))),
      ]);
      expect(ended).toEqual({ code: status, signal: null });
      expect(p.stderr).toBe(`tsvmm: received ${signal}\n`);
      // The guest ran forever until the signal; it never got to power off.
      expect(consoleLines(p.stdout).some((l) => l.startsWith('tiny: exit'))).toBe(false);
    } finally {
      p.kill();
    }
  });

  describe('--serial', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsvmm-serial-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const cmdline = 'tiny.ticks=2 tiny.tick_ms=10 tiny.exit=4';

    it('file=PATH writes the console to the file and nothing to stdout', async () => {
      const file = join(dir, 'console.txt');
      const r = await runTsvmm(['--kernel', tinyElf, '--memory', 'size=128M', '--serial', `file=${file}`, '--cmdline', cmdline]);
      expect(r.code).toBe(4);
      expect(r.stdout).toBe('');
      const lines = consoleLines(readFileSync(file, 'utf8'));
      // tsvmm appends a virtio_mmio.device= entry per virtio device (the console, the rng).
      expect(parseBanner(lines[0]).cmdline).toMatch(new RegExp(`^${cmdline}( virtio_mmio\\.device=\\S+)+$`));
      expect(parseTicks(lines).map((t) => t.n)).toEqual([1, 2]);
      expect(lines.at(-1)).toBe('tiny: exit 4');
    });

    it('off runs the guest without any console output', async () => {
      const r = await runTsvmm(['--kernel', tinyElf, '--memory', 'size=128M', '--serial', 'off', '--cmdline', cmdline]);
      expect(r.code).toBe(4);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe('tsvmm: guest powered off with status 4\n');
    });
  });
});
