/**
 * Every fixed guest-physical address the boot code writes below 1 MiB, in one table so that
 * nothing overlaps (test/vmm/boot/addresses.test.ts checks it). The kernel itself, the initramfs
 * and everything else the guest owns live at or above HIGH_MEMORY_START.
 */
import { BootLayoutError } from './errors.js';

/** GDT: null, 32-bit code (0x08), 64-bit code (0x10), data (0x18), 16-byte TSS (0x20). */
export const GDT_ADDR = 0x500;
export const GDT_SIZE = 0x30;
/** An empty IDT: the guest runs with interrupts off until it installs its own. */
export const IDT_ADDR = 0x530;
export const IDT_SIZE = 0x8;

/** PVH `hvm_start_info` (56 bytes), then the module list, then the memory map. */
export const PVH_START_INFO_ADDR = 0x6000;
export const PVH_START_INFO_SIZE = 0x40;
export const PVH_MODLIST_ADDR = 0x6040;
export const PVH_MODLIST_SIZE = 0x40;
export const PVH_MEMMAP_ADDR = 0x6080;
export const PVH_MEMMAP_MAX_ENTRIES = 128;
export const PVH_MEMMAP_ENTRY_SIZE = 24;

/** Linux `struct boot_params` (the "zero page"). */
export const ZERO_PAGE_ADDR = 0x7000;
export const ZERO_PAGE_SIZE = 0x1000;

/** A small boot stack; RSP starts just below its top. */
export const BOOT_STACK_ADDR = 0x8000;
export const BOOT_STACK_SIZE = 0x1000;
export const BOOT_STACK_POINTER = 0x8ff0;

/** Identity page tables for the 64-bit entry: PML4, one PDPT, four PDs of 2 MiB pages (4 GiB). */
export const PML4_ADDR = 0x9000;
export const PDPT_ADDR = 0xa000;
export const PD_ADDR = 0xb000;
export const PD_COUNT = 4;
export const PAGE_TABLES_SIZE = 0x1000 * (2 + PD_COUNT);

/** Kernel command line, NUL-terminated. */
export const CMDLINE_ADDR = 0x20000;
export const CMDLINE_AREA_SIZE = 0x10000;

/** Start of the EBDA; from here to 1 MiB is reserved in the e820/PVH memory map. */
export const EBDA_START = 0x9fc00;
/**
 * Intel MP floating pointer in the last KiB of base memory (where Linux scans), the configuration
 * table right after it; with many vCPUs that runs on into the reserved 0xa0000 window, which is
 * fine: only the floating pointer has to be found by scanning.
 */
export const MPTABLE_ADDR = 0x9fc00;
export const MPTABLE_SIZE = 0x10400;

/** ACPI: RSDP at the start of the BIOS read-only area (Linux scans 0xe0000–0xfffff), tables after it. */
export const RSDP_ADDR = 0xe0000;
export const ACPI_AREA_SIZE = 0x10000;

/** The VM generation ID (16 bytes, devices/acpi/vmgenid.ts), in reserved memory after the ACPI tables. */
export const VMGENID_ADDR = 0xf0000;
export const VMGENID_AREA_SIZE = 0x10;

/** The real-mode reset vector F000:FFF0, where a rebooting guest jumps (reset-vector.ts). */
export const RESET_VECTOR_ADDR = 0xffff0;
export const RESET_VECTOR_SIZE = 0x10;

/** Kernel and initramfs go at or above 1 MiB; everything below is boot data and firmware area. */
export const HIGH_MEMORY_START = 0x100000;

export interface BootArea {
  readonly name: string;
  readonly start: number;
  readonly size: number;
}

export const BOOT_AREAS: readonly BootArea[] = [
  { name: 'gdt', start: GDT_ADDR, size: GDT_SIZE },
  { name: 'idt', start: IDT_ADDR, size: IDT_SIZE },
  { name: 'pvh-start-info', start: PVH_START_INFO_ADDR, size: PVH_START_INFO_SIZE },
  { name: 'pvh-modlist', start: PVH_MODLIST_ADDR, size: PVH_MODLIST_SIZE },
  { name: 'pvh-memmap', start: PVH_MEMMAP_ADDR, size: PVH_MEMMAP_MAX_ENTRIES * PVH_MEMMAP_ENTRY_SIZE },
  { name: 'zero-page', start: ZERO_PAGE_ADDR, size: ZERO_PAGE_SIZE },
  { name: 'boot-stack', start: BOOT_STACK_ADDR, size: BOOT_STACK_SIZE },
  { name: 'page-tables', start: PML4_ADDR, size: PAGE_TABLES_SIZE },
  { name: 'cmdline', start: CMDLINE_ADDR, size: CMDLINE_AREA_SIZE },
  { name: 'mptable', start: MPTABLE_ADDR, size: MPTABLE_SIZE },
  { name: 'acpi', start: RSDP_ADDR, size: ACPI_AREA_SIZE },
  { name: 'vmgenid', start: VMGENID_ADDR, size: VMGENID_AREA_SIZE },
  { name: 'reset-vector', start: RESET_VECTOR_ADDR, size: RESET_VECTOR_SIZE },
];

/** Throws BootLayoutError naming the first pair of areas that overlap or the first that leaves low memory. */
export function assertDisjoint(areas: readonly BootArea[], limit = HIGH_MEMORY_START): void {
  const sorted = [...areas].sort((a, b) => a.start - b.start);
  for (let i = 0; i < sorted.length; i++) {
    const a = sorted[i]!;
    if (a.size <= 0 || a.start < 0 || a.start + a.size > limit) {
      throw new BootLayoutError(`boot area ${a.name} [0x${a.start.toString(16)}, +0x${a.size.toString(16)}) is empty or outside [0, 0x${limit.toString(16)})`);
    }
    const next = sorted[i + 1];
    if (next !== undefined && a.start + a.size > next.start) {
      throw new BootLayoutError(`boot areas ${a.name} and ${next.name} overlap`);
    }
  }
}
