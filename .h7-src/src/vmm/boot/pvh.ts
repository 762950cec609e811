/**
 * PVH boot information (xen/include/public/arch-x86/hvm/start_info.h): hvm_start_info version 1,
 * a one-entry module list for the initramfs and the memory map. EBX points at the start_info.
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import {
  PVH_MEMMAP_ADDR, PVH_MEMMAP_ENTRY_SIZE, PVH_MEMMAP_MAX_ENTRIES, PVH_MODLIST_ADDR, PVH_START_INFO_ADDR,
} from './addresses.js';
import { BootLayoutError } from './errors.js';
import type { MemoryMapEntry } from './memory-map.js';

export const HVM_START_MAGIC = 0x336ec578;
export const HVM_START_INFO_SIZE = 56;
export const HVM_MODLIST_ENTRY_SIZE = 32;

export interface StartInfoParams {
  readonly cmdlineAddr: number;
  readonly initrd: { addr: number; size: number } | undefined;
  readonly memoryMap: readonly MemoryMapEntry[];
  readonly rsdpAddr: number;
}

/** Writes start_info, module list and memory map; returns the start_info address for EBX. */
export function writeStartInfo(memory: GuestMemory, p: StartInfoParams): number {
  if (p.memoryMap.length > PVH_MEMMAP_MAX_ENTRIES) {
    throw new BootLayoutError(`memory map has ${p.memoryMap.length} entries; the PVH area holds ${PVH_MEMMAP_MAX_ENTRIES}`);
  }
  const info = new DataView(new ArrayBuffer(HVM_START_INFO_SIZE));
  info.setUint32(0, HVM_START_MAGIC, true);
  info.setUint32(4, 1, true); // version
  info.setUint32(8, 0, true); // flags
  info.setUint32(12, p.initrd === undefined ? 0 : 1, true);
  info.setBigUint64(16, p.initrd === undefined ? 0n : BigInt(PVH_MODLIST_ADDR), true);
  info.setBigUint64(24, BigInt(p.cmdlineAddr), true);
  info.setBigUint64(32, BigInt(p.rsdpAddr), true);
  info.setBigUint64(40, BigInt(PVH_MEMMAP_ADDR), true);
  info.setUint32(48, p.memoryMap.length, true);
  info.setUint32(52, 0, true);
  memory.write(PVH_START_INFO_ADDR, new Uint8Array(info.buffer));

  if (p.initrd !== undefined) {
    const mod = new DataView(new ArrayBuffer(HVM_MODLIST_ENTRY_SIZE));
    mod.setBigUint64(0, BigInt(p.initrd.addr), true);
    mod.setBigUint64(8, BigInt(p.initrd.size), true);
    // cmdline_paddr 0 and reserved 0: the module has no command line of its own.
    memory.write(PVH_MODLIST_ADDR, new Uint8Array(mod.buffer));
  }

  const map = new DataView(new ArrayBuffer(p.memoryMap.length * PVH_MEMMAP_ENTRY_SIZE));
  p.memoryMap.forEach((e, i) => {
    const o = i * PVH_MEMMAP_ENTRY_SIZE;
    map.setBigUint64(o, BigInt(e.addr), true);
    map.setBigUint64(o + 8, BigInt(e.size), true);
    map.setUint32(o + 16, e.type, true);
    map.setUint32(o + 20, 0, true);
  });
  memory.write(PVH_MEMMAP_ADDR, new Uint8Array(map.buffer));
  return PVH_START_INFO_ADDR;
}
