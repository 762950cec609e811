import { BOOT_AREAS, CMDLINE_ADDR, CMDLINE_AREA_SIZE, ZERO_PAGE_ADDR, assertDisjoint } from './addresses.js';
import { writeAcpiTables } from './acpi.js';
import { composeCommandLine, writeCommandLine } from './cmdline.js';
import { bootFpu, bootMsrs, linux64Regs, linux64Sregs, pvhRegs, pvhSregs } from './cpu.js';
import { cpuidPerVcpu } from './cpuid.js';
import { BootLayoutError, KernelFormatError } from './errors.js';
import { writeGdt, writeIdt } from './gdt.js';
import { loadInitramfs } from './initramfs.js';
import { loadKernel } from './kernel.js';
import { guestMemoryMap, lowRamEnd } from './memory-map.js';
import { IOAPIC_PINS, writeMpTable } from './mptable.js';
import { IDENTITY_MAPPED_BYTES, writeIdentityPageTables } from './paging.js';
import { writeStartInfo } from './pvh.js';
import { writeZeroPage } from './zero-page.js';
export { KernelFormatError, BootLayoutError, CommandLineError } from './errors.js';
export { setLapicLint, bootMsrs, bootFpu } from './cpu.js';
export { cpuidForVcpu, cpuidPerVcpu } from './cpuid.js';
export { parseKernel } from './kernel.js';
/** KVM_MP_STATE_UNINITIALIZED: an AP waiting for INIT/SIPI. */
export const KVM_MP_STATE_UNINITIALIZED = 1;
/**
 * Command-line limit when the image does not state one (ELF, PVH): x86 Linux's COMMAND_LINE_SIZE
 * is 2048 including the NUL, and it truncates silently beyond that, so refuse instead.
 */
export const DEFAULT_CMDLINE_LIMIT = 2047;
/** Highest vCPU count: APIC ids 0..n-1 plus the IOAPIC id n must fit in 8 bits. */
export const MAX_BOOT_VCPUS = 254;
function validateDevices(devices) {
    const seen = new Set();
    for (const d of devices) {
        if (!Number.isSafeInteger(d.base) || !Number.isSafeInteger(d.size) || d.size <= 0 || d.base < 0 || d.base + d.size > 0x1_0000_0000) {
            throw new BootLayoutError(`virtio-mmio window 0x${d.base.toString(16)}+0x${d.size.toString(16)} is not a 32-bit range`);
        }
        // Below 16 the ISA identity routes already cover the line; 0-4 belong to timer, keyboard, cascade, COM2/COM1.
        if (!Number.isInteger(d.gsi) || d.gsi < 5 || d.gsi >= IOAPIC_PINS || seen.has(d.gsi)) {
            throw new BootLayoutError(`virtio-mmio GSI ${d.gsi} must be unique and in 5..${IOAPIC_PINS - 1}`);
        }
        seen.add(d.gsi);
    }
}
export function layoutGuest(opts) {
    const { memory, vcpus } = opts;
    if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_BOOT_VCPUS)
        throw new BootLayoutError(`vCPU count ${vcpus} is not in 1..${MAX_BOOT_VCPUS}`);
    validateDevices(opts.virtioDevices);
    assertDisjoint(BOOT_AREAS);
    const memoryMap = guestMemoryMap(memory);
    const ramTop = lowRamEnd(memory);
    const k = loadKernel(memory, opts.kernel, ramTop);
    const bz = k.kernel.format === 'bzimage' ? k.kernel : undefined;
    const pvhEntry = k.pvhEntry !== undefined && (k.entry64 === undefined || (opts.preferPvh ?? true)) ? k.pvhEntry : undefined;
    if (pvhEntry === undefined && k.entry64 === undefined)
        throw new KernelFormatError('kernel image has neither a PVH nor a 64-bit entry point');
    const protocol = pvhEntry !== undefined ? 'pvh' : 'linux64';
    if (protocol === 'linux64' && k.kernelEnd > IDENTITY_MAPPED_BYTES) {
        throw new BootLayoutError(`kernel ends at 0x${k.kernelEnd.toString(16)}, beyond the identity-mapped first 4 GiB`);
    }
    const cmdlineLimit = Math.min(CMDLINE_AREA_SIZE - 1, bz !== undefined && bz.header.cmdlineSize > 0 ? bz.header.cmdlineSize : DEFAULT_CMDLINE_LIMIT);
    const cmdline = composeCommandLine(opts.cmdline, opts.virtioDevices, opts.appendVirtioMmioCmdline ?? true);
    writeCommandLine(memory, CMDLINE_ADDR, cmdline, cmdlineLimit);
    // boot.rst: initrd_addr_max is the highest byte the initramfs may use (0x37ffffff before 2.03).
    const initrdMax = bz !== undefined && bz.header.initrdAddrMax !== 0 ? bz.header.initrdAddrMax : 0xffff_ffff;
    const initramfs = opts.initramfs !== undefined && opts.initramfs.length > 0
        ? loadInitramfs(memory, opts.initramfs, k.kernelEnd, ramTop, initrdMax)
        : undefined;
    writeMpTable(memory, { vcpus, extraGsis: opts.virtioDevices.map((d) => d.gsi) });
    const acpi = writeAcpiTables(memory, vcpus, opts.virtioDevices);
    const tables = { gdt: writeGdt(memory), idt: writeIdt(memory) };
    let bsp;
    let entry;
    if (pvhEntry !== undefined) {
        entry = pvhEntry;
        const startInfo = writeStartInfo(memory, { cmdlineAddr: CMDLINE_ADDR, initrd: initramfs, memoryMap, rsdpAddr: acpi.rsdp });
        bsp = { regs: pvhRegs(entry, startInfo), sregs: pvhSregs(tables) };
    }
    else {
        entry = k.entry64 ?? 0;
        writeZeroPage(memory, { bzImage: bz, cmdlineAddr: CMDLINE_ADDR, cmdlineLimit, initrd: initramfs, memoryMap, rsdpAddr: acpi.rsdp });
        const cr3 = writeIdentityPageTables(memory);
        bsp = { regs: linux64Regs(entry, ZERO_PAGE_ADDR), sregs: linux64Sregs(tables, cr3) };
    }
    return {
        bootProtocol: protocol,
        bsp,
        apMpState: KVM_MP_STATE_UNINITIALIZED,
        cpuidPerVcpu: cpuidPerVcpu(opts.supportedCpuid, vcpus),
        msrs: bootMsrs(),
        fpu: bootFpu(),
        entry,
        kernelStart: k.kernelStart,
        kernelEnd: k.kernelEnd,
        initramfs,
        cmdline,
        memoryMap,
        acpi,
    };
}
/** Alias kept for callers that think of it as "boot the guest". */
export const bootGuest = layoutGuest;
//# sourceMappingURL=index.js.map