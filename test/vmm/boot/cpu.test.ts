import { describe, expect, it } from 'vitest';
import { anonymousGuestMemory } from '../../../src/memory/guest-memory.js';
import { GDT_ADDR, PML4_ADDR } from '../../../src/vmm/boot/addresses.js';
import {
  APIC_LVT_LINT0, APIC_LVT_LINT1, MSR, bootFpu, bootMsrs, linux64Regs, linux64Sregs, pvhRegs, pvhSregs, setLapicLint,
} from '../../../src/vmm/boot/cpu.js';
import { SEL_BOOT_CS, SEL_BOOT_DS, SEL_CODE32, SEL_TSS, segmentFromDescriptor, writeGdt, writeIdt } from '../../../src/vmm/boot/gdt.js';
import { IDENTITY_MAPPED_BYTES, translate, writeIdentityPageTables } from '../../../src/vmm/boot/paging.js';

const MiB = 1 << 20;

describe('identity page tables', () => {
  it('map the first 4 GiB 1:1 with 2 MiB pages and nothing beyond', () => {
    const mem = anonymousGuestMemory([{ guestBase: 0, size: 64 * MiB }]);
    const cr3 = writeIdentityPageTables(mem);
    expect(cr3).toBe(BigInt(PML4_ADDR));
    expect(IDENTITY_MAPPED_BYTES).toBe(4 * 1024 * MiB);
    for (const va of [0n, 0x7000n, 0x1000200n, 0x3fffffffn, 0x40000000n, 0xbfffffffn, 0xfee00000n, 0xffffffffn, 0x12345678n]) {
      expect(translate(mem, cr3, va)).toBe(va);
    }
    expect(translate(mem, cr3, 0x1_0000_0000n)).toBeUndefined();
    expect(translate(mem, cr3, 0xffffffff81000000n)).toBeUndefined();
    // Every PD entry is a present, writable 2 MiB page.
    const pde = mem.readU64(0xb000 + 8 * 5);
    expect(pde).toBe(0xa00000n | 0x83n);
  });
});

describe('GDT and segment state', () => {
  it('writes the Linux boot selectors and decodes them consistently', () => {
    const mem = anonymousGuestMemory([{ guestBase: 0, size: 4 * MiB }]);
    const gdt = writeGdt(mem);
    expect(gdt).toEqual({ base: BigInt(GDT_ADDR), limit: 0x2f });
    const cs = segmentFromDescriptor(SEL_BOOT_CS, mem.readU64(GDT_ADDR + SEL_BOOT_CS));
    expect(cs).toMatchObject({ selector: 0x10, l: 1, db: 0, type: 0xb, s: 1, present: 1, g: 1, limit: 0xffffffff, base: 0n });
    const ds = segmentFromDescriptor(SEL_BOOT_DS, mem.readU64(GDT_ADDR + SEL_BOOT_DS));
    expect(ds).toMatchObject({ selector: 0x18, l: 0, db: 1, type: 0x3, s: 1, limit: 0xffffffff });
    const c32 = segmentFromDescriptor(SEL_CODE32, mem.readU64(GDT_ADDR + SEL_CODE32));
    expect(c32).toMatchObject({ l: 0, db: 1, type: 0xb });
    const tss = segmentFromDescriptor(SEL_TSS, mem.readU64(GDT_ADDR + SEL_TSS));
    expect(tss).toMatchObject({ type: 0xb, s: 0, present: 1, base: 0n, limit: 0x67 });
  });

  it('builds long-mode sregs for the 64-bit protocol', () => {
    const mem = anonymousGuestMemory([{ guestBase: 0, size: 4 * MiB }]);
    const t = { gdt: writeGdt(mem), idt: writeIdt(mem) };
    const s = linux64Sregs(t, 0x9000n);
    expect(s.cs.selector).toBe(0x10);
    expect(s.cs.l).toBe(1);
    for (const seg of [s.ds, s.es, s.fs, s.gs, s.ss]) expect(seg.selector).toBe(0x18);
    expect(s.tr.selector).toBe(0x20);
    expect(s.cr0 & 0x80000001n).toBe(0x80000001n);
    expect(s.cr4 & 0x20n).toBe(0x20n);
    expect(s.efer).toBe(0x500n);
    expect(s.cr3).toBe(0x9000n);
    expect(s.apic_base).toBe(0xfee00900n);
    expect(s.idt).toEqual({ base: 0x530n, limit: 7 });
    const r = linux64Regs(0x1000200, 0x7000);
    expect(r).toMatchObject({ rip: 0x1000200n, rsi: 0x7000n, rflags: 2n });
  });

  it('builds 32-bit protected-mode sregs for PVH', () => {
    const mem = anonymousGuestMemory([{ guestBase: 0, size: 4 * MiB }]);
    const s = pvhSregs({ gdt: writeGdt(mem), idt: writeIdt(mem) });
    expect(s.cr0 & 0x80000001n).toBe(1n);
    expect(s.cr4).toBe(0n);
    expect(s.efer).toBe(0n);
    expect(s.cs).toMatchObject({ selector: 0x08, db: 1, l: 0, base: 0n, limit: 0xffffffff });
    expect(s.ds).toMatchObject({ selector: 0x18, db: 1, base: 0n, limit: 0xffffffff });
    expect(s.tr).toMatchObject({ type: 0xb, base: 0n, limit: 0x67 });
    expect(pvhRegs(0x100020, 0x6000)).toMatchObject({ rip: 0x100020n, rbx: 0x6000n, rflags: 2n });
  });
});

describe('MSRs, FPU, LAPIC', () => {
  it('sets the boot MSRs and never IA32_ARCH_CAPABILITIES', () => {
    const msrs = bootMsrs();
    const by = new Map(msrs.map((m) => [m.index, m.data]));
    expect(by.has(MSR.IA32_ARCH_CAPABILITIES)).toBe(false);
    for (const i of [0x174, 0x175, 0x176, 0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, 0xc0000102, 0x10]) expect(by.get(i)).toBe(0n);
    expect(by.get(0x1a0)! & 1n).toBe(1n);
    expect(by.get(0x2ff)).toBe(0x806n);
    expect(bootFpu()).toMatchObject({ fcw: 0x37f, mxcsr: 0x1f80 });
  });

  it('programs LINT0 as ExtINT and LINT1 as NMI, keeping other bits', () => {
    const page = new Uint8Array(0x400);
    const dv = new DataView(page.buffer);
    dv.setUint32(APIC_LVT_LINT0, 0x10000 | 0x200, true); // masked, some mode
    dv.setUint32(APIC_LVT_LINT1, 0x10000, true);
    setLapicLint(page);
    expect(dv.getUint32(APIC_LVT_LINT0, true)).toBe(0x10700);
    expect(dv.getUint32(APIC_LVT_LINT1, true)).toBe(0x10400);
    expect(() => setLapicLint(new Uint8Array(16))).toThrow(RangeError);
  });
});
