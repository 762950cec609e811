/**
 * Linux bzImage (Documentation/arch/x86/boot.rst): the real-mode setup sectors carry the setup
 * header at 0x1f1; the protected-mode kernel follows and is entered through its 64-bit entry at
 * load address + 0x200. We require boot protocol 2.06+ (cmdline_size) and XLF_KERNEL_64.
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import { HIGH_MEMORY_START } from './addresses.js';
import { BootLayoutError, KernelFormatError } from './errors.js';

export const SETUP_HEADER_OFFSET = 0x1f1;
const HDRS_MAGIC = 0x53726448; // "HdrS"
export const MIN_BOOT_PROTOCOL = 0x206;
export const LOADFLAG_LOADED_HIGH = 0x01;
export const LOADFLAG_CAN_USE_HEAP = 0x80;
export const XLF_KERNEL_64 = 0x01;
/** The 64-bit entry is this far into the protected-mode kernel. */
export const ENTRY64_OFFSET = 0x200;
/** Bytes of the image we read header fields from (through kernel_info_offset at 0x268). */
const HEADER_READ_END = 0x26c;

export interface SetupHeader {
  readonly setupSects: number;
  readonly syssize: number;
  readonly version: number;
  readonly loadflags: number;
  readonly code32Start: number;
  readonly initrdAddrMax: number;
  readonly kernelAlignment: number;
  readonly relocatable: boolean;
  readonly xloadflags: number;
  readonly cmdlineSize: number;
  readonly prefAddress: number;
  readonly initSize: number;
}

export interface BzImage {
  readonly format: 'bzimage';
  readonly header: SetupHeader;
  /** The raw setup header bytes, from 0x1f1 to its self-declared end; copied into boot_params. */
  readonly headerBytes: Uint8Array;
  /** The protected-mode kernel: everything after the setup sectors. */
  readonly payload: Uint8Array;
}

export function isBzImage(image: Uint8Array): boolean {
  return image.length >= 0x206 && new DataView(image.buffer, image.byteOffset, image.byteLength).getUint32(0x202, true) === HDRS_MAGIC;
}

export function parseBzImage(image: Uint8Array): BzImage {
  if (!isBzImage(image)) throw new KernelFormatError('not a bzImage: no "HdrS" magic at offset 0x202');
  if (image.length < HEADER_READ_END) throw new KernelFormatError(`bzImage is truncated: ${image.length} bytes, the setup header alone needs ${HEADER_READ_END}`);
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (dv.getUint16(0x1fe, true) !== 0xaa55) throw new KernelFormatError('bzImage boot_flag at 0x1fe is not 0xaa55');
  const version = dv.getUint16(0x206, true);
  const v = `${version >> 8}.${(version & 0xff).toString().padStart(2, '0')}`;
  if (version < MIN_BOOT_PROTOCOL) {
    throw new KernelFormatError(`bzImage uses boot protocol ${v}; tsvmm needs 2.06 or newer (Linux 2.6.22+)`, { version });
  }
  const loadflags = dv.getUint8(0x211);
  if ((loadflags & LOADFLAG_LOADED_HIGH) === 0) throw new KernelFormatError('image is a zImage (loads below 1 MiB); only bzImage is supported');
  const xloadflags = dv.getUint16(0x236, true);
  if ((xloadflags & XLF_KERNEL_64) === 0) {
    throw new KernelFormatError('bzImage has no 64-bit entry point (XLF_KERNEL_64 unset); build an x86_64 kernel', { xloadflags });
  }
  const rawSects = dv.getUint8(0x1f1);
  const setupSects = rawSects === 0 ? 4 : rawSects;
  const payloadOffset = (setupSects + 1) * 512;
  const syssize = dv.getUint32(0x1f4, true);
  // syssize counts 16-byte paragraphs rounded up (Linux's build.c: (sz + 15 + 4) / 16), so a
  // complete image may end up to 15 bytes before syssize * 16; only a larger gap is truncation.
  if (payloadOffset >= image.length || image.length - payloadOffset < syssize * 16 - 15) {
    throw new KernelFormatError(`bzImage is truncated: ${image.length} bytes, header promises ${payloadOffset + syssize * 16}`);
  }
  const header: SetupHeader = {
    setupSects,
    syssize,
    version,
    loadflags,
    code32Start: dv.getUint32(0x214, true),
    initrdAddrMax: dv.getUint32(0x22c, true),
    kernelAlignment: dv.getUint32(0x230, true),
    relocatable: dv.getUint8(0x234) !== 0,
    xloadflags,
    cmdlineSize: dv.getUint32(0x238, true),
    prefAddress: version >= 0x20a ? Number(dv.getBigUint64(0x258, true) & 0xffff_ffff_ffffn) : 0,
    initSize: version >= 0x20a ? dv.getUint32(0x260, true) : 0,
  };
  // The byte at 0x201 (the jump's displacement) gives the header's end: 0x202 + that byte. Copy
  // only that much: bytes past it are setup code, and would read as garbage fields (setup_data).
  const headerEnd = Math.min(0x202 + dv.getUint8(0x201), 0x290);
  return {
    format: 'bzimage',
    header,
    headerBytes: image.slice(SETUP_HEADER_OFFSET, headerEnd),
    payload: image.subarray(payloadOffset),
  };
}

/** Bytes the kernel needs from its load address while it decompresses and runs. */
export function kernelFootprint(bz: BzImage): number {
  return Math.max(bz.header.initSize, bz.payload.length);
}

/**
 * Where the protected-mode kernel goes: pref_address when the kernel is relocatable and it fits,
 * otherwise code32_start (1 MiB for every bzImage in practice).
 */
export function chooseLoadAddress(bz: BzImage, lowRamEnd: number): number {
  const need = kernelFootprint(bz);
  const fits = (a: number): boolean => a >= HIGH_MEMORY_START && a + need <= lowRamEnd;
  const h = bz.header;
  if (h.relocatable && h.prefAddress !== 0 && fits(h.prefAddress)) return h.prefAddress;
  const fixed = h.code32Start === 0 ? HIGH_MEMORY_START : h.code32Start;
  if (fits(fixed)) return fixed;
  if (h.relocatable && fits(HIGH_MEMORY_START)) return HIGH_MEMORY_START;
  throw new BootLayoutError(
    `kernel needs 0x${need.toString(16)} bytes from 0x${fixed.toString(16)} but low RAM ends at 0x${lowRamEnd.toString(16)}; give the VM more memory`,
  );
}

export function loadBzImage(memory: GuestMemory, bz: BzImage, loadAddress: number): void {
  memory.write(loadAddress, bz.payload);
}
