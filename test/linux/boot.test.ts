/**
 * Debian's stock kernel boots under tsvmm to a shell, through both kernel formats, and ends
 * tsvmm the way the guest asks (README: exit statuses), with either console transport.
 *  - 1 vCPU, the uncompressed vmlinux through its PVH note, `console=hvc0` on the virtio console
 *    over the API socket (`--console socket --serial off` + `tsvmm-remote console --port
 *    console`), driven by curl as Cloud Hypervisor's snapshot guide does; its output goes on
 *    across a snapshot restored in a new process, every byte once; `/dev/hwrng` reads from
 *    virtio-rng; `vm.power-button` and a handler in the guest power it off (ACPI soft-off) → 0.
 *  - 2 vCPUs, the bzImage, console on tsvmm's stdin/stdout, root file system on a virtio disk
 *    (`root=/dev/vda`, switch_root from the initramfs); `reboot -f` → status 120 (reset), and
 *    the host's e2fsck finds the root file system clean afterwards.
 */
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LINUX, LinuxGuest, BOOT_TIMEOUT_MS, removeScratch, scratchDir } from '../support/linux-guest.js';
import { run } from '../support/tsvmm-process.js';
import { curl } from '../support/curl.js';
import { deadline } from '../support/timing.js';
import { EXIT_STATUS } from '../../src/vmm/exit-status.js';

const CASE_TIMEOUT_MS = BOOT_TIMEOUT_MS + 240_000;

/** MemTotal is RAM less what the kernel keeps for itself (its image, page tables, reserved). */
function expectMemTotalPlausible(meminfo: string, memoryMiB: number): void {
  const m = /^MemTotal:\s+(\d+) kB$/m.exec(meminfo);
  expect(m, meminfo).not.toBeNull();
  const totalMiB = Number(m![1]) / 1024;
  expect(totalMiB).toBeLessThanOrEqual(memoryMiB);
  // Debian's kernel image and early allocations take well under 100 MiB.
  expect(totalMiB).toBeGreaterThan(memoryMiB - 100);
}

describe('Debian Linux boots under tsvmm', () => {
  let dir: string;
  let rootfs: string;
  beforeAll(() => {
    dir = scratchDir();
    rootfs = join(dir, 'rootfs.ext4');
    copyFileSync(LINUX.rootfs, rootfs);
  });
  afterAll(() => removeScratch(dir));

  it('1 vCPU, PVH vmlinux, console=hvc0 through tsvmm-remote, driven by curl as in Cloud Hypervisor\'s snapshot guide: its output survives a snapshot and restore once; the ACPI power button powers it off', { timeout: CASE_TIMEOUT_MS + 120_000 }, async () => {
    const apiSocket = join(dir, 'one.sock');
    const boot = await LinuxGuest.boot({
      cpus: 1, memoryMiB: 256, kernel: LINUX.vmlinux, cmdline: 'tsvmm.test=pvh-one', console: 'socket', port: 'virtio', apiSocket,
    });
    let guest = boot;
    try {
      expect(guest.console.stdout).toMatch(/linux: cpus=1/);
      // The kernel's console is the virtio console, and the shell runs on it.
      expect(await guest.ok('cat /sys/class/tty/console/active')).toBe('hvc0');
      expect(await guest.ok('tty')).toBe('/dev/hvc0');
      expect(await guest.ok('echo $((6 * 7))')).toBe('42');
      expect(await guest.ok('cat /sys/devices/system/cpu/online')).toBe('0');
      expect(await guest.ok('grep -c ^processor /proc/cpuinfo')).toBe('1');
      await expectXsaveOn(guest);
      expectMemTotalPlausible(await guest.ok('cat /proc/meminfo'), 256);
      const cmdline = await guest.ok('cat /proc/cmdline');
      expect(cmdline.split(' ')).toContain('tsvmm.test=pvh-one');
      // The command went in through the WebSocket console and its output came back that way;
      // nothing of it reached tsvmm's own stdout.
      expect(guest.vmm.stdout).not.toContain('tsvmm.test=pvh-one');
      // A background job that ends while the shell (PID 1) waits for the next command leaves the
      // shell running (with the terminal's echo off, busybox ash exited there: LinuxGuest).
      await guest.ok('sleep 1 &');
      await new Promise((r) => setTimeout(r, 3000));
      expect(await guest.ok('echo still-here')).toBe('still-here');
      const info = JSON.parse((await curl(apiSocket, 'GET', 'vm.info')).body) as { config: { console: unknown; serial: unknown }; device_tree: Record<string, unknown> };
      expect(info.config).toMatchObject({ console: { mode: 'Socket' }, serial: { mode: 'Off' } });
      expect(Object.keys(info.device_tree).sort()).toEqual(['__console', '__ioapic', '__rng']);
      // virtio-rng, there by default as in Cloud Hypervisor: the kernel's hw_random uses it.
      expect(await guest.ok('cat /sys/class/misc/hw_random/rng_current')).toMatch(/^virtio_rng\.\d+$/);
      expect(await guest.ok('dd if=/dev/hwrng bs=32 count=1 2>/dev/null | od -An -tx1 | wc -w')).toBe('32');
      const counters = JSON.parse((await curl(apiSocket, 'GET', 'vm.counters')).body) as { __rng: { bytes: number } };
      expect(counters.__rng.bytes).toBeGreaterThanOrEqual(32);

      // Cloud Hypervisor's snapshot guide, with curl: pause, snapshot, then `--restore
      // source_url=...` in a new process and resume. A writer numbers its lines meanwhile: the
      // old console's output and the new one's are every line once, in order.
      const LINES = 150;
      await guest.ok(`(i=0; while [ $i -lt ${LINES} ]; do echo seq$i; i=$((i + 1)); sleep 0.05; done) &`);
      await guest.console.waitFor(/seq30\b/, 120_000);
      const snap = join(dir, 'hvc0-snapshot');
      expect((await curl(apiSocket, 'PUT', 'vm.pause')).status).toBe(204);
      expect((await curl(apiSocket, 'PUT', 'vm.snapshot', JSON.stringify({ destination_url: `file://${snap}` }))).status).toBe(204);
      // What the old VMM sent before the pause may still be on its way through tsvmm-remote.
      await quiet(guest.console);
      await guest.killHard();
      const before = guest.console.stdout;
      const restoredSocket = join(dir, 'one-restored.sock');
      guest = await LinuxGuest.restore(snap, { apiSocket: restoredSocket, console: 'socket', port: 'virtio', resume: false });
      expect((await curl(restoredSocket, 'PUT', 'vm.resume')).status).toBe(204);
      await guest.console.waitFor(new RegExp(`seq${LINES - 1}\\b`), 240_000);
      const numbers = [...(before + guest.console.stdout).matchAll(/seq(\d+)/g)].map((m) => Number(m[1]));
      const missing = Array.from({ length: LINES }, (_, i) => i).filter((i) => !numbers.includes(i));
      expect(`missing ${missing.join(',')} doubled ${numbers.filter((n, i) => numbers.indexOf(n) !== i).join(',')}`).toBe('missing  doubled ');
      expect(numbers).toEqual(Array.from({ length: LINES }, (_, i) => i));
      expect(await guest.ok('echo restored-$((6 * 7))')).toBe('restored-42');

      // The ACPI power button (vm.power-button): Linux's button driver found the device behind
      // the generic event device; a handler waits for its key and powers off.
      const event = await guest.ok('for d in /sys/class/input/input*; do grep -q "Power Button" $d/name && ls $d | grep ^event; done');
      expect(event).toMatch(/^event\d+$/);
      await guest.ok(`(dd if=/dev/input/${event} of=/dev/null bs=24 count=1 2>/dev/null; poweroff -f) &`);
      expect((await curl(restoredSocket, 'PUT', 'vm.power-button')).status).toBe(204);
      expect(await guest.ended(deadline(30_000))).toBe(0);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${guest.diagnostics()}`);
    } finally {
      boot.kill();
      guest.kill();
    }
  });

  it('2 vCPUs, bzImage, root=/dev/vda from rootfs.ext4, console on stdio: CPUs, RAM, command line; reboot -f ends tsvmm with the reset status 120', { timeout: CASE_TIMEOUT_MS }, async () => {
    const guest = await LinuxGuest.boot({
      cpus: 2, memoryMiB: 512, cmdline: 'root=/dev/vda tsvmm.test=bz-two', disks: [`path=${rootfs},id=root`],
      apiSocket: join(dir, 'two.sock'), ready: /rootfs: init ok/,
    });
    try {
      expect(guest.console.stdout).toMatch(/linux: cpus=2/);
      expect(guest.console.stdout).toMatch(/rootfs: init ok, \/ is \/dev\/vda ext4/);
      expect(await guest.ok('cat /etc/hostname')).toBe('tsvmm-rootfs');
      expect(await guest.ok('cat /sys/devices/system/cpu/online')).toBe('0-1');
      expect(await guest.ok('grep -c ^processor /proc/cpuinfo')).toBe('2');
      await expectXsaveOn(guest);
      expectMemTotalPlausible(await guest.ok('cat /proc/meminfo'), 512);
      expect((await guest.ok('cat /proc/cmdline')).split(' ')).toEqual(expect.arrayContaining(['root=/dev/vda', 'tsvmm.test=bz-two']));
      // Both CPUs run work: a process pinned to each reports the CPU it ran on.
      expect(await guest.ok("for c in 0 1; do taskset -c $c cat /proc/self/stat | cut -d' ' -f39; done")).toBe('0\n1');
      // A file written on the root disk, flushed, and the file system made clean for the reboot.
      await guest.ok('echo written-by-guest > /root/note; sync; mount -o remount,ro /');
      // Linux stops the other CPU, then (hardware-reduced ACPI, no EFI) jumps to the real-mode
      // reset vector, whose reset routine pulses the i8042 reset line: tsvmm ends with the reset status.
      expect(await guest.end('reboot -f')).toBe(EXIT_STATUS.reset);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${guest.diagnostics()}`);
    } finally {
      guest.kill();
    }
    const fsck = await run('e2fsck', ['-fn', rootfs]);
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
    const note = await run('debugfs', ['-R', 'cat /root/note', rootfs]);
    expect(note.stdout).toBe('written-by-guest\n');
  });
});

/** Resolves once `p` has written nothing to its stdout for a second. */
async function quiet(p: { stdout: string }): Promise<void> {
  for (let seen = -1; seen !== p.stdout.length;) {
    seen = p.stdout.length;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/**
 * Linux turned XSAVE on and found CPUID leaf 0xD consistent with XCR0 (boot/cpu.ts bootXcr0: on
 * the nested test host it was not, Linux fell back to FXSAVE with a warning, and guests crashed
 * at random around it).
 */
async function expectXsaveOn(guest: LinuxGuest): Promise<void> {
  const fpu = await guest.ok('dmesg | grep -e x86/fpu -e XSAVE');
  expect(fpu).toMatch(/x86\/fpu: Enabled xstate features 0x[0-9a-f]+, context size is \d+ bytes/);
  expect(fpu).not.toMatch(/XSAVE consistency problem|will use FXSAVE/);
}
