/**
 * ELF kernel images (vmlinux, or a small test kernel): ELF32 and ELF64, little-endian x86 only.
 * Parsing validates every offset against the file; loading copies PT_LOAD segments to their
 * physical addresses and zeroes the rest of each segment (bss). The Xen PVH entry note
 * (XEN_ELFNOTE_PHYS32_ENTRY) in a PT_NOTE segment selects PVH boot.
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import { HIGH_MEMORY_START } from './addresses.js';
import { BootLayoutError, KernelFormatError } from './errors.js';

const EM_386 = 3;
const EM_X86_64 = 62;
const ET_EXEC = 2;
const PT_LOAD = 1;
const PT_NOTE = 4;
const XEN_ELFNOTE_PHYS32_ENTRY = 18;
/** More program headers than any kernel has; bounds the work a hostile file can cause. */
const MAX_PHDRS = 256;

export interface ElfSegment {
  readonly offset: number;
  readonly paddr: number;
  readonly filesz: number;
  readonly memsz: number;
}

export interface ElfKernel {
  readonly format: 'elf';
  readonly elfClass: 32 | 64;
  /** Physical address of e_entry (translated through the segment that maps it). */
  readonly entry: number;
  /** 32-bit physical PVH entry from the Xen note, when the image has one. */
  readonly pvhEntry: number | undefined;
  readonly segments: readonly ElfSegment[];
  readonly loadStart: number;
  readonly loadEnd: number;
}

export function isElf(image: Uint8Array): boolean {
  return image.length >= 4 && image[0] === 0x7f && image[1] === 0x45 && image[2] === 0x4c && image[3] === 0x46;
}

function toSafe(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new KernelFormatError(`ELF ${what} 0x${v.toString(16)} is out of range`);
  return Number(v);
}

interface RawPhdr { type: number; offset: number; vaddr: bigint; paddr: number; filesz: number; memsz: number }

export function parseElf(image: Uint8Array): ElfKernel {
  if (!isElf(image)) throw new KernelFormatError('not an ELF file');
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const cls = image[4];
  if (cls !== 1 && cls !== 2) throw new KernelFormatError(`ELF class ${cls} is neither ELF32 nor ELF64`);
  const is64 = cls === 2;
  const ehsize = is64 ? 64 : 52;
  if (image.length < ehsize) throw new KernelFormatError(`ELF file is truncated: ${image.length} bytes, header needs ${ehsize}`);
  if (image[5] !== 1) throw new KernelFormatError('ELF file is big-endian; only little-endian x86 kernels boot');
  const type = dv.getUint16(16, true);
  if (type !== ET_EXEC) throw new KernelFormatError(`ELF type ${type} is not an executable (ET_EXEC); pass a linked kernel image`);
  const machine = dv.getUint16(18, true);
  const wanted = is64 ? EM_X86_64 : EM_386;
  if (machine !== wanted && !(machine === EM_X86_64 && !is64)) {
    throw new KernelFormatError(`ELF machine ${machine} is not x86 (want ${wanted}); this kernel is for another architecture`, { machine });
  }
  const entryRaw = is64 ? dv.getBigUint64(24, true) : BigInt(dv.getUint32(24, true));
  const phoff = is64 ? toSafe(dv.getBigUint64(32, true), 'e_phoff') : dv.getUint32(28, true);
  const phentsize = dv.getUint16(is64 ? 54 : 42, true);
  const phnum = dv.getUint16(is64 ? 56 : 44, true);
  const minEnt = is64 ? 56 : 32;
  if (phnum === 0 || phnum > MAX_PHDRS) throw new KernelFormatError(`ELF has ${phnum} program headers (want 1..${MAX_PHDRS})`);
  if (phentsize < minEnt) throw new KernelFormatError(`ELF program header size ${phentsize} is smaller than ${minEnt}`);
  if (phoff + phnum * phentsize > image.length) throw new KernelFormatError('ELF file is truncated: program headers run past the end');

  const phdrs: RawPhdr[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    phdrs.push(is64
      ? {
          type: dv.getUint32(o, true),
          offset: toSafe(dv.getBigUint64(o + 8, true), 'p_offset'),
          vaddr: dv.getBigUint64(o + 16, true),
          paddr: toSafe(dv.getBigUint64(o + 24, true), 'p_paddr'),
          filesz: toSafe(dv.getBigUint64(o + 32, true), 'p_filesz'),
          memsz: toSafe(dv.getBigUint64(o + 40, true), 'p_memsz'),
        }
      : {
          type: dv.getUint32(o, true),
          offset: dv.getUint32(o + 4, true),
          vaddr: BigInt(dv.getUint32(o + 8, true)),
          paddr: dv.getUint32(o + 12, true),
          filesz: dv.getUint32(o + 16, true),
          memsz: dv.getUint32(o + 20, true),
        });
  }

  const loads = phdrs.filter((p) => p.type === PT_LOAD && p.memsz > 0);
  if (loads.length === 0) throw new KernelFormatError('ELF has no loadable (PT_LOAD) segments');
  for (const p of loads) {
    if (p.filesz > p.memsz) throw new KernelFormatError(`ELF segment at 0x${p.paddr.toString(16)} has filesz > memsz`);
    if (p.offset + p.filesz > image.length) throw new KernelFormatError(`ELF file is truncated: segment at 0x${p.paddr.toString(16)} runs past the end`);
  }

  let pvhEntry: number | undefined;
  for (const p of phdrs) {
    if (p.type !== PT_NOTE) continue;
    if (p.offset + p.filesz > image.length) throw new KernelFormatError('ELF file is truncated: a note segment runs past the end');
    pvhEntry ??= findPvhEntry(dv, p.offset, p.filesz);
  }

  return {
    format: 'elf',
    elfClass: is64 ? 64 : 32,
    entry: physicalEntry(entryRaw, loads),
    pvhEntry,
    segments: loads.map((p) => ({ offset: p.offset, paddr: p.paddr, filesz: p.filesz, memsz: p.memsz })),
    loadStart: Math.min(...loads.map((p) => p.paddr)),
    loadEnd: Math.max(...loads.map((p) => p.paddr + p.memsz)),
  };
}

/**
 * Linux sets e_entry to the physical startup_64, but other linkers leave a virtual address such as
 * 0xffffffff81000000: a physical hit wins, otherwise translate through the segment that maps it.
 */
function physicalEntry(entry: bigint, loads: readonly RawPhdr[]): number {
  for (const p of loads) {
    if (entry >= BigInt(p.paddr) && entry < BigInt(p.paddr + p.memsz)) return Number(entry);
  }
  for (const p of loads) {
    if (entry >= p.vaddr && entry < p.vaddr + BigInt(p.memsz)) return Number(entry - p.vaddr) + p.paddr;
  }
  throw new KernelFormatError(`ELF entry point 0x${entry.toString(16)} is not inside any loadable segment`);
}

const align4 = (n: number): number => (n + 3) & ~3;

/** Walks the notes in [off, off+len) for name "Xen", type XEN_ELFNOTE_PHYS32_ENTRY. */
function findPvhEntry(dv: DataView, off: number, len: number): number | undefined {
  let p = off;
  const end = off + len;
  while (p + 12 <= end) {
    const namesz = dv.getUint32(p, true);
    const descsz = dv.getUint32(p + 4, true);
    const type = dv.getUint32(p + 8, true);
    const nameOff = p + 12;
    const descOff = nameOff + align4(namesz);
    const next = descOff + align4(descsz);
    if (namesz > len || descsz > len || next > end) throw new KernelFormatError('ELF note runs past its segment');
    const isXen = namesz === 4 && dv.getUint32(nameOff, true) === 0x006e6558; // "Xen\0"
    if (isXen && type === XEN_ELFNOTE_PHYS32_ENTRY) {
      if (descsz !== 4 && descsz !== 8) throw new KernelFormatError(`Xen PVH entry note has ${descsz} bytes of data (want 4 or 8)`);
      if (descsz === 8 && dv.getUint32(descOff + 4, true) !== 0) throw new KernelFormatError('Xen PVH entry point is above 4 GiB');
      return dv.getUint32(descOff, true);
    }
    p = next;
  }
  return undefined;
}

/** Copies the segments into guest RAM; each must sit at or above 1 MiB inside one RAM region. */
export function loadElf(memory: GuestMemory, image: Uint8Array, elf: ElfKernel): void {
  for (const s of elf.segments) {
    if (s.paddr < HIGH_MEMORY_START || !memory.contains(s.paddr, s.memsz)) {
      throw new BootLayoutError(
        `kernel segment [0x${s.paddr.toString(16)}, +0x${s.memsz.toString(16)}) does not fit in guest RAM at or above 1 MiB; give the VM more memory`,
      );
    }
  }
  for (const s of elf.segments) {
    memory.write(s.paddr, image.subarray(s.offset, s.offset + s.filesz));
    memory.fill(s.paddr + s.filesz, s.memsz - s.filesz, 0);
  }
}
