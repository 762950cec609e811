import { describe, expect, it } from 'vitest';
import {
  SIZES, decodeClock, decodeCpuid2, decodeMsrList, decodeMsrs, decodeRegs, decodeSregs, decodeXcrs, encodeClock,
  encodeCpuid2, encodeIoeventfd, encodeMsrs, encodeRegs, encodeSregs, encodeUserMemoryRegion, encodeXcrs, msrListBuffer,
  REG_NAMES,
} from '../../src/kvm/structs.js';
import { KVM_IOCTLS } from '../../src/kvm/ioctls.js';
import type { KvmRegs, KvmSegment, KvmSregs } from '../../src/kvm/types.js';

function seg(i: number): KvmSegment {
  return { base: BigInt(i) << 32n | 0x1000n, limit: 0xffff_fff0 + i, selector: i * 8, type: 11, present: 1, dpl: i & 3, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0 };
}

describe('struct codecs', () => {
  it('kvm_regs round-trips every register, including full 64-bit values', () => {
    const regs = Object.fromEntries(REG_NAMES.map((n, i) => [n, (0xf000_0000_0000_0000n | BigInt(i))])) as unknown as KvmRegs;
    const b = encodeRegs(regs);
    expect(b.byteLength).toBe(SIZES.kvm_regs);
    expect(new DataView(b.buffer).getBigUint64(16 * 8, true)).toBe(regs.rip); // rip is the 17th u64
    expect(decodeRegs(b)).toEqual(regs);
  });

  it('kvm_sregs round-trips segments, tables, control registers and the interrupt bitmap', () => {
    const s: KvmSregs = {
      cs: seg(1), ds: seg(2), es: seg(3), fs: seg(4), gs: seg(5), ss: seg(6), tr: seg(7), ldt: seg(8),
      gdt: { base: 0x500n, limit: 0x27 }, idt: { base: 0x600n, limit: 0xfff },
      cr0: 0x8000_0011n, cr2: 2n, cr3: 0x9000n, cr4: 0x20n, cr8: 0n, efer: 0x500n, apic_base: 0xfee0_0900n,
      interrupt_bitmap: [1n, 0n, 1n << 63n, 5n],
    };
    const b = encodeSregs(s);
    expect(b.byteLength).toBe(SIZES.kvm_sregs);
    expect(decodeSregs(b)).toEqual(s);
  });

  it('cpuid, msrs, msr list, xcrs and clock round-trip', () => {
    const cpuid = [{ function: 0x8000_0001, index: 0, flags: 0, eax: 1, ebx: 2, ecx: 0xffff_ffff, edx: 4 }, { function: 7, index: 1, flags: 1, eax: 5, ebx: 6, ecx: 7, edx: 8 }];
    expect(decodeCpuid2(encodeCpuid2(cpuid))).toEqual(cpuid);
    const msrs = [{ index: 0xc000_0080, data: 0x500n }, { index: 0x10, data: 0xffff_ffff_ffff_ffffn }];
    expect(decodeMsrs(encodeMsrs(msrs), 2)).toEqual(msrs);
    const list = msrListBuffer(2);
    new DataView(list.buffer).setUint32(4, 0x174, true);
    new DataView(list.buffer).setUint32(8, 0x175, true);
    expect(decodeMsrList(list)).toEqual([0x174, 0x175]);
    const xcrs = { flags: 0, xcrs: [{ xcr: 0, value: 7n }] };
    expect(decodeXcrs(encodeXcrs(xcrs))).toEqual(xcrs);
    const clock = { clock: 123456789n, flags: 2, realtime: 5n, host_tsc: 6n };
    expect(decodeClock(encodeClock(clock))).toEqual(clock);
  });

  it('refuses buffers whose counts overrun them (kernel or snapshot data is not trusted)', () => {
    const b = encodeCpuid2([]);
    new DataView(b.buffer).setUint32(0, 1000, true);
    expect(() => decodeCpuid2(b)).toThrow(RangeError);
    expect(() => decodeRegs(new Uint8Array(10))).toThrow(/144 bytes/);
    expect(() => encodeXcrs({ flags: 0, xcrs: Array.from({ length: 17 }, () => ({ xcr: 0, value: 0n })) })).toThrow(RangeError);
  });

  it('argument structs put fields where the kernel reads them', () => {
    const m = new DataView(encodeUserMemoryRegion(3, 1, 0x1_0000_0000n, 0x20_0000n, 0x7f00_0000_0000n).buffer);
    expect([m.getUint32(0, true), m.getUint32(4, true), m.getBigUint64(8, true), m.getBigUint64(16, true), m.getBigUint64(24, true)])
      .toEqual([3, 1, 0x1_0000_0000n, 0x20_0000n, 0x7f00_0000_0000n]);
    const io = new DataView(encodeIoeventfd(9, 0xd000_0050n, 4, 2n, 1).buffer);
    expect([io.getBigUint64(0, true), io.getBigUint64(8, true), io.getUint32(16, true), io.getInt32(20, true), io.getUint32(24, true)])
      .toEqual([2n, 0xd000_0050n, 4, 9, 1]);
  });

  it('ioctl numbers are unsigned 32-bit values with the struct size encoded', () => {
    expect(KVM_IOCTLS.KVM_RUN).toBe(0xae80);
    expect(KVM_IOCTLS.KVM_GET_REGS).toBe(0x8090ae81); // _IOR(0xAE, 0x81, 144)
    expect(KVM_IOCTLS.KVM_GET_SUPPORTED_CPUID).toBe(0xc008ae05);
  });
});
