/**
 * The boot GDT and the KvmSegment values that must agree with it. Layout follows Linux's boot
 * GDT so the 64-bit boot protocol's __BOOT_CS (0x10) and __BOOT_DS (0x18) are what it expects;
 * 0x08 is a flat 32-bit code segment for PVH entry; 0x20 is a TSS (16 bytes in long mode).
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { KvmSegment } from '../../kvm/types.js';
import { GDT_ADDR, GDT_SIZE, IDT_ADDR, IDT_SIZE } from './addresses.js';

export const SEL_CODE32 = 0x08;
export const SEL_BOOT_CS = 0x10;
export const SEL_BOOT_DS = 0x18;
export const SEL_TSS = 0x20;

/** Flat 4 GiB, present, ring 0, execute/read, accessed; D=1 (32-bit). */
export const DESC_CODE32 = 0x00cf_9b00_0000_ffffn;
/** Same with L=1, D=0: 64-bit code. */
export const DESC_CODE64 = 0x00af_9b00_0000_ffffn;
/** Flat 4 GiB, present, ring 0, read/write, accessed. */
export const DESC_DATA = 0x00cf_9300_0000_ffffn;
/** Busy TSS, base 0, limit 0x67 (the PVH ABI asks for exactly this TR). */
export const DESC_TSS = 0x0000_8b00_0000_0067n;

/** The GDT image, entry per 8 bytes; the TSS takes two slots (the upper one is base[63:32] = 0). */
export const BOOT_GDT: readonly bigint[] = [0n, DESC_CODE32, DESC_CODE64, DESC_DATA, DESC_TSS, 0n];

export function writeGdt(memory: GuestMemory): { base: bigint; limit: number } {
  const bytes = new Uint8Array(GDT_SIZE);
  const dv = new DataView(bytes.buffer);
  BOOT_GDT.forEach((d, i) => dv.setBigUint64(i * 8, d, true));
  memory.write(GDT_ADDR, bytes);
  return { base: BigInt(GDT_ADDR), limit: BOOT_GDT.length * 8 - 1 };
}

/** An empty (all-zero) IDT; any exception before the guest installs its own triple-faults. */
export function writeIdt(memory: GuestMemory): { base: bigint; limit: number } {
  memory.fill(IDT_ADDR, IDT_SIZE, 0);
  return { base: BigInt(IDT_ADDR), limit: IDT_SIZE - 1 };
}

/** Decodes a descriptor into the hidden segment state KVM needs, so the two cannot drift apart. */
export function segmentFromDescriptor(selector: number, d: bigint): KvmSegment {
  const bits = (shift: number, width: number): number => Number((d >> BigInt(shift)) & ((1n << BigInt(width)) - 1n));
  const g = bits(55, 1);
  const rawLimit = bits(0, 16) | (bits(48, 4) << 16);
  return {
    base: BigInt(bits(16, 24) + bits(56, 8) * 0x100_0000),
    limit: g === 1 ? rawLimit * 0x1000 + 0xfff : rawLimit,
    selector,
    type: bits(40, 4),
    s: bits(44, 1),
    dpl: bits(45, 2),
    present: bits(47, 1),
    avl: bits(52, 1),
    l: bits(53, 1),
    db: bits(54, 1),
    g,
    unusable: 0,
  };
}

export function descriptorAt(selector: number): bigint {
  const d = BOOT_GDT[selector >> 3];
  if (d === undefined) throw new RangeError(`selector 0x${selector.toString(16)} is outside the boot GDT`);
  return d;
}

export function bootSegment(selector: number): KvmSegment {
  return segmentFromDescriptor(selector, descriptorAt(selector));
}

/** LDTR: none. Marked unusable so KVM's entry checks skip it. */
export function nullLdt(): KvmSegment {
  return { base: 0n, limit: 0, selector: 0, type: 2, present: 0, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 1 };
}
