/**
 * Linux `struct boot_params` (the zero page) for the 64-bit boot protocol. For a bzImage the
 * kernel's own setup header is copied in and the loader fields are filled; for an ELF vmlinux
 * entered at startup_64 there is no header, so the fields the kernel reads are written directly.
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import { ZERO_PAGE_ADDR, ZERO_PAGE_SIZE } from './addresses.js';
import { LOADFLAG_CAN_USE_HEAP, LOADFLAG_LOADED_HIGH, SETUP_HEADER_OFFSET, type BzImage } from './bzimage.js';
import { BootLayoutError } from './errors.js';
import type { MemoryMapEntry } from './memory-map.js';

/** Offsets into boot_params (arch/x86/include/uapi/asm/bootparam.h). */
export const BP = {
  acpiRsdpAddr: 0x070,
  extRamdiskImage: 0x0c0,
  extRamdiskSize: 0x0c4,
  extCmdLinePtr: 0x0c8,
  e820Entries: 0x1e8,
  bootFlag: 0x1fe,
  header: 0x202,
  version: 0x206,
  typeOfLoader: 0x210,
  loadflags: 0x211,
  ramdiskImage: 0x218,
  ramdiskSize: 0x21c,
  heapEndPtr: 0x224,
  cmdLinePtr: 0x228,
  initrdAddrMax: 0x22c,
  kernelAlignment: 0x230,
  cmdlineSize: 0x238,
  e820Table: 0x2d0,
} as const;

export const E820_MAX_ENTRIES_ZEROPAGE = 128;
const TYPE_OF_LOADER_UNDEFINED = 0xff;
/**
 * End of the setup heap, relative to the real-mode code, minus 0x200 (boot.rst). Only the 16-bit
 * entry uses it; we enter at 64 bits but fill it as the protocol asks for CAN_USE_HEAP.
 */
const HEAP_END_PTR = 0xe000 - 0x200;
/** Protocol version that added acpi_rsdp_addr. */
const PROTOCOL_ACPI_RSDP = 0x20e;

export interface ZeroPageParams {
  readonly bzImage: BzImage | undefined;
  readonly cmdlineAddr: number;
  readonly cmdlineLimit: number;
  readonly initrd: { addr: number; size: number } | undefined;
  readonly memoryMap: readonly MemoryMapEntry[];
  readonly rsdpAddr: number;
}

export function writeZeroPage(memory: GuestMemory, p: ZeroPageParams, at = ZERO_PAGE_ADDR): void {
  if (p.memoryMap.length > E820_MAX_ENTRIES_ZEROPAGE) {
    throw new BootLayoutError(`memory map has ${p.memoryMap.length} entries; the zero page holds ${E820_MAX_ENTRIES_ZEROPAGE}`);
  }
  const page = new Uint8Array(ZERO_PAGE_SIZE);
  const dv = new DataView(page.buffer);
  let writeRsdp = true;
  if (p.bzImage !== undefined) {
    page.set(p.bzImage.headerBytes, SETUP_HEADER_OFFSET);
    writeRsdp = p.bzImage.header.version >= PROTOCOL_ACPI_RSDP;
    dv.setUint16(BP.heapEndPtr, HEAP_END_PTR, true);
  } else {
    dv.setUint16(BP.bootFlag, 0xaa55, true);
    dv.setUint32(BP.header, 0x53726448, true);
    dv.setUint32(BP.kernelAlignment, 0x0100_0000, true);
    dv.setUint32(BP.cmdlineSize, p.cmdlineLimit, true);
  }
  dv.setUint8(BP.typeOfLoader, TYPE_OF_LOADER_UNDEFINED);
  dv.setUint8(BP.loadflags, dv.getUint8(BP.loadflags) | LOADFLAG_LOADED_HIGH | LOADFLAG_CAN_USE_HEAP);
  dv.setUint32(BP.cmdLinePtr, p.cmdlineAddr, true);
  dv.setUint32(BP.extCmdLinePtr, 0, true);
  dv.setUint32(BP.ramdiskImage, p.initrd?.addr ?? 0, true);
  dv.setUint32(BP.ramdiskSize, p.initrd?.size ?? 0, true);
  dv.setUint32(BP.extRamdiskImage, 0, true);
  dv.setUint32(BP.extRamdiskSize, 0, true);
  if (writeRsdp) dv.setBigUint64(BP.acpiRsdpAddr, BigInt(p.rsdpAddr), true);
  dv.setUint8(BP.e820Entries, p.memoryMap.length);
  p.memoryMap.forEach((e, i) => {
    const o = BP.e820Table + i * 20;
    dv.setBigUint64(o, BigInt(e.addr), true);
    dv.setBigUint64(o + 8, BigInt(e.size), true);
    dv.setUint32(o + 16, e.type, true);
  });
  memory.write(at, page);
}
