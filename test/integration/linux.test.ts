/**
 * Slow tier: a stock Debian kernel (from `bash guest-images/debian-linux.sh`) under tsvmm.
 * Runs only with TSVMM_SLOW_TESTS=1. On a PVM host (this project's CI machines: guest ring 0 is
 * emulated at ~2 µs an instruction) the kernel needs 0.5–1.5 minutes to reach its memory set-up and
 * later dies on an instruction KVM cannot emulate (`int3` in the alternatives self-test, see
 * docs/linux-guests.md), so there the test checks the milestones that prove our boot tables were
 * read: our command line, our e820 map, the ACPI tables, the MADT's two CPUs, and the kernel's
 * memory accounting. On a host with hardware virtualization the busybox /init must run.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { announceKvmSkip, hasKvm } from '../support/kvm.js';
import { TsvmmProcess, repoRoot } from '../support/tsvmm-process.js';

const slow = process.env.TSVMM_SLOW_TESTS === '1';
const linuxDir = join(repoRoot, 'guest-images', 'out', 'linux');
const vmlinux = join(linuxDir, 'vmlinux');
const initramfs = join(linuxDir, 'initramfs.cpio.gz');
/** PVM hosts load the kvm_pvm module instead of kvm_intel/kvm_amd. */
const pvmHost = existsSync('/sys/module/kvm_pvm');

if (!slow) {
  process.stderr.write(
    '\n*** SKIPPED SLOW TESTS: test/integration/linux.test.ts — real Linux guests take minutes on this PVM host; set TSVMM_SLOW_TESTS=1 ***\n\n',
  );
} else {
  announceKvmSkip('test/integration/linux.test.ts');
}

// CX16 and XSAVE enable instructions (lock cmpxchg16b, xsave/xrstor) that KVM's emulator cannot
// run; hiding them lets the kernel get further on a PVM host and changes nothing essential elsewhere.
const CMDLINE = 'console=ttyS0 earlyprintk=serial,ttyS0,115200 clearcpuid=cx16,xsave linux.poweroff';
const MIB = 256;

describe.skipIf(!slow || !hasKvm)('a stock Debian kernel under tsvmm (slow tier)', () => {
  let vm: TsvmmProcess | undefined;
  afterEach(async () => {
    vm?.kill();
    if (vm) await vm.exited;
    vm = undefined;
  });

  it('reads our boot tables and reaches its memory set-up with 2 vCPUs', { timeout: 400_000 }, async () => {
    for (const f of [vmlinux, initramfs]) {
      if (!existsSync(f)) throw new Error(`${f} is missing: run \`bash guest-images/debian-linux.sh\` first`);
    }
    vm = new TsvmmProcess([
      '--kernel', vmlinux, '--initramfs', initramfs, '--cpus', 'boot=2', '--memory', `size=${MIB}M`, '--cmdline', CMDLINE,
    ]);
    // Each milestone's budget is several times what it took on the PVM host under load.
    await vm.waitFor(/Linux version 6\.\d+/, 120_000);
    // The console ends lines with \r\n, which `.` does not match.
    const cmd = await vm.waitFor(/Command line: ([^\r\n]*)\r?\n/, 30_000);
    expect(cmd[1]).toBe(CMDLINE);
    const usable = await vm.waitFor(/BIOS-e820: \[mem 0x0*100000-0x([0-9a-f]+)\] usable/, 30_000);
    expect(Number.parseInt(usable[1]!, 16) + 1).toBe(MIB * 1024 * 1024);
    await vm.waitFor(/ACPI: RSDP 0x0*E0000 /, 60_000);
    await vm.waitFor(/ACPI: Using ACPI \(MADT\) for SMP configuration information/, 120_000);
    await vm.waitFor(/smpboot: Allowing 2 CPUs, 0 hotplug CPUs/, 60_000);
    const mem = await vm.waitFor(/Memory: (\d+)K\/(\d+)K available/, 240_000);
    // The kernel counts the RAM our e820 gave it, less the 1 KiB-granular holes below 1 MiB.
    expect(Number(mem[2]) * 1024).toBeGreaterThan((MIB - 1) * 1024 * 1024);
    expect(Number(mem[2]) * 1024).toBeLessThanOrEqual(MIB * 1024 * 1024);
    if (!pvmHost) {
      await vm.waitFor(/linux: init ok/, 120_000);
      await vm.waitFor(/linux: cpus=2/, 10_000);
    }
  });
});
