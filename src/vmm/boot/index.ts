/**
 * Lays out an x86-64 guest for boot: loads the kernel (and initramfs), writes the command line,
 * memory map, boot parameters, MP and ACPI tables, GDT/IDT and page tables into guest RAM, and
 * returns the vCPU state (as plain data) for the builder to apply with KVM ioctls.
 *
 * Boot protocol: an ELF with a Xen PVH note boots PVH; any other ELF64 or a bzImage boots through
 * the 64-bit Linux boot protocol. APs are not given registers: they stay in KVM's wait-for-SIPI
 * state (KVM_MP_STATE_UNINITIALIZED, the default for non-BSP vCPUs with an in-kernel irqchip) until
 * the guest's BSP starts them with INIT/SIPI.
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { KvmCpuidEntry2, KvmMsrEntry, KvmRegs, KvmSregs } from '../../kvm/types.js';
import { BOOT_AREAS, CMDLINE_ADDR, CMDLINE_AREA_SIZE, ZERO_PAGE_ADDR, assertDisjoint } from './addresses.js';
import { writeAcpiTables, type AcpiLayout } from './acpi.js';
import { composeCommandLine, writeCommandLine, type VirtioMmioDevice } from './cmdline.js';
import { bootFpu, bootMsrs, bootXcr0, linux64Regs, linux64Sregs, pvhRegs, pvhSregs, type BootFpu } from './cpu.js';
import { cpuidPerVcpu } from './cpuid.js';
import { BootLayoutError, KernelFormatError } from './errors.js';
import { writeGdt, writeIdt } from './gdt.js';
import { loadInitramfs, type InitramfsPlacement } from './initramfs.js';
import { loadKernel } from './kernel.js';
import { guestMemoryMap, lowRamEnd, type MemoryMapEntry } from './memory-map.js';
import { writeMpTable } from './mptable.js';
import { POWER_BUTTON_GSI, VIRTIO_FIRST_IRQ, VIRTIO_LAST_IRQ, VMGENID_GSI } from '../../memory/layout.js';
import { IDENTITY_MAPPED_BYTES, writeIdentityPageTables } from './paging.js';
import { writeStartInfo } from './pvh.js';
import { writeResetVector } from './reset-vector.js';
import { writeZeroPage } from './zero-page.js';

export type { VirtioMmioDevice } from './cmdline.js';
export { KernelFormatError, BootLayoutError, CommandLineError } from './errors.js';
export { setLapicLint, bootMsrs, bootFpu, type BootFpu } from './cpu.js';
export { cpuidForVcpu, cpuidPerVcpu } from './cpuid.js';
export { parseKernel, type ParsedKernel } from './kernel.js';

/** KVM_MP_STATE_UNINITIALIZED: an AP waiting for INIT/SIPI. */
export const KVM_MP_STATE_UNINITIALIZED = 1;
/**
 * Command-line limit when the image does not state one (ELF, PVH): x86 Linux's COMMAND_LINE_SIZE
 * is 2048 including the NUL, and it truncates silently beyond that, so refuse instead.
 */
export const DEFAULT_CMDLINE_LIMIT = 2047;
/** Highest vCPU count: APIC ids 0..n-1 plus the IOAPIC id n must fit in 8 bits. */
export const MAX_BOOT_VCPUS = 254;

export interface LayoutOptions {
  readonly kernel: Uint8Array;
  readonly initramfs?: Uint8Array | undefined;
  readonly cmdline: string;
  readonly memory: GuestMemory;
  readonly vcpus: number;
  readonly virtioDevices: readonly VirtioMmioDevice[];
  /** KVM_GET_SUPPORTED_CPUID's entries. */
  readonly supportedCpuid: readonly KvmCpuidEntry2[];
  /** Append `virtio_mmio.device=` for each device to the command line (default true). */
  readonly appendVirtioMmioCmdline?: boolean | undefined;
  /**
   * An ELF64 vmlinux carrying both entries boots PVH unless this is false, in which case it
   * boots through startup_64 with a zero page (default true).
   */
  readonly preferPvh?: boolean | undefined;
}

export interface GuestLayout {
  readonly bootProtocol: 'pvh' | 'linux64';
  readonly bsp: { readonly regs: KvmRegs; readonly sregs: KvmSregs };
  /** Every AP starts in this KVM mp_state; no registers are set for them. */
  readonly apMpState: typeof KVM_MP_STATE_UNINITIALIZED;
  readonly cpuidPerVcpu: KvmCpuidEntry2[][];
  /** XCR0 every vCPU starts with (cpu.ts bootXcr0). */
  readonly xcr0: bigint;
  /** The same list for every vCPU. */
  readonly msrs: KvmMsrEntry[];
  readonly fpu: BootFpu;
  readonly entry: number;
  readonly kernelStart: number;
  readonly kernelEnd: number;
  readonly initramfs: InitramfsPlacement | undefined;
  /** The command line as written to guest memory. */
  readonly cmdline: string;
  readonly memoryMap: readonly MemoryMapEntry[];
  readonly acpi: AcpiLayout;
}

function validateDevices(devices: readonly VirtioMmioDevice[]): void {
  const seen = new Set<number>();
  for (const d of devices) {
    if (!Number.isSafeInteger(d.base) || !Number.isSafeInteger(d.size) || d.size <= 0 || d.base < 0 || d.base + d.size > 0x1_0000_0000) {
      throw new BootLayoutError(`virtio-mmio window 0x${d.base.toString(16)}+0x${d.size.toString(16)} is not a 32-bit range`);
    }
    // Below 16 the ISA identity routes already cover the line; 0-4 belong to timer, keyboard, cascade, COM2/COM1.
    if (!Number.isInteger(d.gsi) || d.gsi < VIRTIO_FIRST_IRQ || d.gsi > VIRTIO_LAST_IRQ || seen.has(d.gsi)) {
      throw new BootLayoutError(`virtio-mmio GSI ${d.gsi} must be unique and in ${VIRTIO_FIRST_IRQ}..${VIRTIO_LAST_IRQ} (at most ${VIRTIO_LAST_IRQ - VIRTIO_FIRST_IRQ + 1} virtio devices)`);
    }
    seen.add(d.gsi);
  }
}

export function layoutGuest(opts: LayoutOptions): GuestLayout {
  const { memory, vcpus } = opts;
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_BOOT_VCPUS) throw new BootLayoutError(`vCPU count ${vcpus} is not in 1..${MAX_BOOT_VCPUS}`);
  validateDevices(opts.virtioDevices);
  assertDisjoint(BOOT_AREAS);
  const memoryMap = guestMemoryMap(memory);
  const ramTop = lowRamEnd(memory);

  const k = loadKernel(memory, opts.kernel, ramTop);
  const bz = k.kernel.format === 'bzimage' ? k.kernel : undefined;
  const pvhEntry = k.pvhEntry !== undefined && (k.entry64 === undefined || (opts.preferPvh ?? true)) ? k.pvhEntry : undefined;
  if (pvhEntry === undefined && k.entry64 === undefined) throw new KernelFormatError('kernel image has neither a PVH nor a 64-bit entry point');
  const protocol: 'pvh' | 'linux64' = pvhEntry !== undefined ? 'pvh' : 'linux64';
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

  writeMpTable(memory, { vcpus, extraGsis: [...opts.virtioDevices.map((d) => d.gsi), VMGENID_GSI, POWER_BUTTON_GSI] });
  const acpi = writeAcpiTables(memory, vcpus, opts.virtioDevices);
  const tables = { gdt: writeGdt(memory), idt: writeIdt(memory) };
  writeResetVector(memory);

  let bsp: GuestLayout['bsp'];
  let entry: number;
  if (pvhEntry !== undefined) {
    entry = pvhEntry;
    const startInfo = writeStartInfo(memory, { cmdlineAddr: CMDLINE_ADDR, initrd: initramfs, memoryMap, rsdpAddr: acpi.rsdp });
    bsp = { regs: pvhRegs(entry, startInfo), sregs: pvhSregs(tables) };
  } else {
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
    xcr0: bootXcr0(opts.supportedCpuid),
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
