/**
 * The guest's physical memory map as firmware would report it (e820 for the Linux boot protocol,
 * the hvm_memmap table for PVH): the RAM regions of GuestMemory, minus the EBDA/BIOS window
 * [0x9fc00, 1 MiB) that holds the MP table, the ACPI tables and the reset vector and is reported reserved.
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import { EBDA_START, HIGH_MEMORY_START } from './addresses.js';
import { BootLayoutError } from './errors.js';

export const E820_RAM = 1;
export const E820_RESERVED = 2;

export interface MemoryMapEntry {
  readonly addr: number;
  readonly size: number;
  readonly type: number;
}

/** Smallest region 0 that holds the boot data and leaves room for a kernel. */
export const MIN_LOW_RAM = 2 * HIGH_MEMORY_START;

export function guestMemoryMap(memory: GuestMemory): MemoryMapEntry[] {
  const low = memory.regions[0];
  if (low === undefined || low.guestBase !== 0 || low.size < MIN_LOW_RAM) {
    throw new BootLayoutError(`guest RAM must start at address 0 with at least ${MIN_LOW_RAM / HIGH_MEMORY_START} MiB in its first region`);
  }
  const out: MemoryMapEntry[] = [];
  for (const r of memory.regions) {
    const end = r.guestBase + r.size;
    // Cut the reserved window out of whichever region covers it.
    if (r.guestBase < EBDA_START) out.push({ addr: r.guestBase, size: Math.min(end, EBDA_START) - r.guestBase, type: E820_RAM });
    const highStart = Math.max(r.guestBase, HIGH_MEMORY_START);
    if (end > highStart) out.push({ addr: highStart, size: end - highStart, type: E820_RAM });
  }
  out.push({ addr: EBDA_START, size: HIGH_MEMORY_START - EBDA_START, type: E820_RESERVED });
  return out.sort((a, b) => a.addr - b.addr);
}

/** End of RAM that is contiguous from 0 and below 4 GiB: where 32-bit loaders place things. */
export function lowRamEnd(memory: GuestMemory): number {
  const low = memory.regions[0]!;
  return Math.min(low.guestBase + low.size, 0x1_0000_0000);
}
