/** Builders for synthetic kernel images and a few readers the tests share. */
import type { KvmCpuidEntry2 } from '../../../src/kvm/types.js';

export interface BzOptions {
  version?: number;
  xloadflags?: number;
  loadflags?: number;
  setupSects?: number;
  payloadSize?: number;
  initSize?: number;
  prefAddress?: number;
  relocatable?: boolean;
  cmdlineSize?: number;
  initrdAddrMax?: number;
  code32Start?: number;
}

/** A bzImage with a valid setup header and a recognisable payload (byte i = i & 0xff ^ 0x5a). */
export function makeBzImage(o: BzOptions = {}): Uint8Array {
  const setupSects = o.setupSects ?? 4;
  const payloadSize = o.payloadSize ?? 0x4000;
  const setupLen = ((setupSects === 0 ? 4 : setupSects) + 1) * 512;
  const img = new Uint8Array(setupLen + payloadSize);
  const dv = new DataView(img.buffer);
  dv.setUint8(0x1f1, setupSects);
  dv.setUint32(0x1f4, payloadSize / 16, true);
  dv.setUint16(0x1fa, 0xffff, true);
  dv.setUint16(0x1fe, 0xaa55, true);
  dv.setUint8(0x200, 0xeb);
  dv.setUint8(0x201, 0x6a); // header ends at 0x26c
  dv.setUint32(0x202, 0x53726448, true);
  dv.setUint16(0x206, o.version ?? 0x20f, true);
  dv.setUint8(0x211, o.loadflags ?? 0x01);
  dv.setUint32(0x214, o.code32Start ?? 0x100000, true);
  dv.setUint32(0x22c, o.initrdAddrMax ?? 0x7fffffff, true);
  dv.setUint32(0x230, 0x200000, true);
  dv.setUint8(0x234, (o.relocatable ?? true) ? 1 : 0);
  dv.setUint16(0x236, o.xloadflags ?? 0x1, true);
  dv.setUint32(0x238, o.cmdlineSize ?? 2047, true);
  dv.setBigUint64(0x258, BigInt(o.prefAddress ?? 0x1000000), true);
  dv.setUint32(0x260, o.initSize ?? 0x20000, true);
  // Bytes past the declared header end (setup code): must never reach boot_params.
  img.fill(0xcc, 0x26c, 0x290);
  for (let i = 0; i < payloadSize; i++) img[setupLen + i] = (i & 0xff) ^ 0x5a;
  return img;
}

export interface ElfSegmentSpec {
  paddr: number;
  vaddr?: bigint;
  data: Uint8Array;
  memsz?: number;
}

export interface ElfOptions {
  elfClass?: 32 | 64;
  machine?: number;
  entry: bigint;
  segments: ElfSegmentSpec[];
  /** Adds a PT_NOTE with a Xen PHYS32_ENTRY note (after an unrelated note, to exercise walking). */
  pvhEntry?: number;
  pvhDescSize?: 4 | 8;
}

function note(name: string, type: number, desc: Uint8Array): Uint8Array {
  const nameBytes = new TextEncoder().encode(name + '\0');
  const pad = (n: number): number => (n + 3) & ~3;
  const out = new Uint8Array(12 + pad(nameBytes.length) + pad(desc.length));
  const dv = new DataView(out.buffer);
  dv.setUint32(0, nameBytes.length, true);
  dv.setUint32(4, desc.length, true);
  dv.setUint32(8, type, true);
  out.set(nameBytes, 12);
  out.set(desc, 12 + pad(nameBytes.length));
  return out;
}

export function makeElf(o: ElfOptions): Uint8Array {
  const is64 = (o.elfClass ?? 64) === 64;
  const ehsize = is64 ? 64 : 52;
  const phentsize = is64 ? 56 : 32;
  let notes: Uint8Array | undefined;
  if (o.pvhEntry !== undefined) {
    const desc = new Uint8Array(o.pvhDescSize ?? 4);
    new DataView(desc.buffer).setUint32(0, o.pvhEntry, true);
    const other = note('GNU', 3, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
    const xen = note('Xen', 18, desc);
    notes = new Uint8Array(other.length + xen.length);
    notes.set(other);
    notes.set(xen, other.length);
  }
  const phnum = o.segments.length + (notes ? 1 : 0);
  let off = ehsize + phnum * phentsize;
  const placed = o.segments.map((s) => { const at = off; off += s.data.length; return at; });
  const notesAt = off;
  off += notes?.length ?? 0;
  const img = new Uint8Array(off);
  const dv = new DataView(img.buffer);
  img.set([0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, 1, 1]);
  dv.setUint16(16, 2, true);
  dv.setUint16(18, o.machine ?? (is64 ? 62 : 3), true);
  dv.setUint32(20, 1, true);
  if (is64) {
    dv.setBigUint64(24, o.entry, true);
    dv.setBigUint64(32, BigInt(ehsize), true);
    dv.setUint16(52, ehsize, true);
    dv.setUint16(54, phentsize, true);
    dv.setUint16(56, phnum, true);
  } else {
    dv.setUint32(24, Number(o.entry), true);
    dv.setUint32(28, ehsize, true);
    dv.setUint16(40, ehsize, true);
    dv.setUint16(42, phentsize, true);
    dv.setUint16(44, phnum, true);
  }
  const phdr = (i: number, type: number, offset: number, vaddr: bigint, paddr: number, filesz: number, memsz: number): void => {
    const p = ehsize + i * phentsize;
    dv.setUint32(p, type, true);
    if (is64) {
      dv.setBigUint64(p + 8, BigInt(offset), true);
      dv.setBigUint64(p + 16, vaddr, true);
      dv.setBigUint64(p + 24, BigInt(paddr), true);
      dv.setBigUint64(p + 32, BigInt(filesz), true);
      dv.setBigUint64(p + 40, BigInt(memsz), true);
    } else {
      dv.setUint32(p + 4, offset, true);
      dv.setUint32(p + 8, Number(vaddr), true);
      dv.setUint32(p + 12, paddr, true);
      dv.setUint32(p + 16, filesz, true);
      dv.setUint32(p + 20, memsz, true);
    }
  };
  o.segments.forEach((s, i) => {
    img.set(s.data, placed[i]!);
    phdr(i, 1, placed[i]!, s.vaddr ?? BigInt(s.paddr), s.paddr, s.data.length, s.memsz ?? s.data.length);
  });
  if (notes) {
    img.set(notes, notesAt);
    phdr(o.segments.length, 4, notesAt, 0n, 0, notes.length, notes.length);
  }
  return img;
}

export function pattern(len: number, seed = 1): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

export function sum8(b: Uint8Array): number {
  let s = 0;
  for (const x of b) s = (s + x) & 0xff;
  return s;
}

export function asciiAt(b: Uint8Array, off: number, len: number): string {
  return String.fromCharCode(...b.subarray(off, off + len));
}

function vendorRegs(v: string): { ebx: number; edx: number; ecx: number } {
  const b = new TextEncoder().encode(v);
  const dv = new DataView(b.buffer);
  return { ebx: dv.getUint32(0, true), edx: dv.getUint32(4, true), ecx: dv.getUint32(8, true) };
}

/** A KVM_GET_SUPPORTED_CPUID-like list for the given vendor. */
export function fakeSupportedCpuid(vendor: 'GenuineIntel' | 'AuthenticAMD'): KvmCpuidEntry2[] {
  const e = (fn: number, index: number, regs: Partial<KvmCpuidEntry2>, flags = 0): KvmCpuidEntry2 =>
    ({ function: fn, index, flags, eax: 0, ebx: 0, ecx: 0, edx: 0, ...regs });
  return [
    e(0, 0, { eax: 0x1f, ...vendorRegs(vendor) }),
    e(1, 0, { eax: 0x00a50f00, ebx: 0x00000800 | 0x05, ecx: 0x76f8320b, edx: 0x078bfbff & ~(1 << 28) }),
    e(4, 0, { eax: 0x121 | (0x7 << 14) | (0x3f << 26) }, 1),
    e(4, 1, { eax: 0x122 }, 1),
    e(4, 2, { eax: 0x143 }, 1),
    e(4, 3, { eax: 0x163 }, 1),
    e(4, 4, { eax: 0 }, 1),
    e(0xb, 0, { eax: 1, ebx: 2, ecx: 0x100, edx: 9 }, 1),
    e(0xb, 1, { eax: 7, ebx: 64, ecx: 0x201, edx: 9 }, 1),
    e(0xb, 2, { ecx: 2, edx: 9 }, 1),
    e(0x1f, 0, { eax: 1, ebx: 2, ecx: 0x100, edx: 9 }, 1),
    e(0x1f, 1, { eax: 7, ebx: 64, ecx: 0x201, edx: 9 }, 1),
    e(0x4000_0000, 0, { eax: 0x4000_0001, ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x4d }),
    e(0x4000_0001, 0, { eax: 0x01007afb }),
    e(0x8000_0000, 0, { eax: 0x8000_0021 }),
    e(0x8000_0001, 0, { ecx: 0x75c237ff, edx: 0x2fd3fbff }),
    e(0x8000_0008, 0, { eax: 0x3030, ecx: 0x0000_703f }),
    e(0x8000_001e, 0, { eax: 5, ebx: 0x105, ecx: 0x300 }),
  ];
}
