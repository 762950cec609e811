import { describe, expect, it } from 'vitest';
import { anonymousGuestMemory } from '../../../src/memory/guest-memory.js';
import { ramLayout } from '../../../src/memory/layout.js';
import { CMDLINE_ADDR, PVH_MEMMAP_ADDR, PVH_MODLIST_ADDR, PVH_START_INFO_ADDR, RESET_VECTOR_ADDR, RSDP_ADDR, ZERO_PAGE_ADDR } from '../../../src/vmm/boot/addresses.js';
import { BootLayoutError, CommandLineError } from '../../../src/vmm/boot/errors.js';
import { layoutGuest, type LayoutOptions } from '../../../src/vmm/boot/index.js';
import { BP } from '../../../src/vmm/boot/zero-page.js';
import { HVM_START_MAGIC } from '../../../src/vmm/boot/pvh.js';
import { fakeSupportedCpuid, makeBzImage, makeElf, pattern } from './fixtures.js';

const MiB = 1 << 20;
const GiB = 1024 * MiB;

function opts(ram: number, over: Partial<LayoutOptions> = {}): LayoutOptions {
  return {
    kernel: makeBzImage({ initSize: 0x800000 }),
    cmdline: 'console=ttyS0 panic=-1',
    memory: anonymousGuestMemory(ramLayout(ram)),
    vcpus: 1,
    virtioDevices: [{ base: 0xd0000000, size: 0x1000, gsi: 5 }, { base: 0xd0001000, size: 0x1000, gsi: 6 }],
    supportedCpuid: fakeSupportedCpuid('GenuineIntel'),
    ...over,
  };
}

function readCString(mem: LayoutOptions['memory'], at: number): string {
  let s = '';
  for (let a = at; ; a++) { const b = mem.readU8(a); if (b === 0) return s; s += String.fromCharCode(b); }
}

function e820(mem: LayoutOptions['memory']): Array<{ addr: number; size: number; type: number }> {
  const n = mem.readU8(ZERO_PAGE_ADDR + BP.e820Entries);
  return Array.from({ length: n }, (_, i) => {
    const o = ZERO_PAGE_ADDR + BP.e820Table + i * 20;
    return { addr: Number(mem.readU64(o)), size: Number(mem.readU64(o + 8)), type: mem.readU32(o + 16) };
  });
}

describe('layoutGuest with a bzImage (64-bit Linux boot protocol)', () => {
  it('fills the zero page and e820 for 128 MiB', () => {
    const o = opts(128 * MiB, { initramfs: pattern(0x12345) });
    const r = layoutGuest(o);
    const m = o.memory;
    const zp = ZERO_PAGE_ADDR;
    expect(r.bootProtocol).toBe('linux64');
    expect(m.readU32(zp + BP.header)).toBe(0x53726448);
    expect(m.readU16(zp + BP.version)).toBe(0x20f);
    expect(m.readU8(zp + BP.typeOfLoader)).toBe(0xff);
    expect(m.readU8(zp + BP.loadflags) & 0x81).toBe(0x81);
    expect(m.readU16(zp + BP.heapEndPtr)).toBe(0xde00);
    expect(m.readU32(zp + BP.cmdLinePtr)).toBe(CMDLINE_ADDR);
    expect(readCString(m, CMDLINE_ADDR)).toBe('console=ttyS0 panic=-1 virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6');
    expect(m.readU64(zp + BP.acpiRsdpAddr)).toBe(BigInt(RSDP_ADDR));
    // A rebooting Linux jumps to F000:FFF0 (machine_real_restart): the reset routine there pulses the
    // i8042 reset line (mov al,0xfe; out 0x64,al; hlt; jmp) and sits in the e820-reserved window.
    expect([...m.read(RESET_VECTOR_ADDR, 7)]).toEqual([0xb0, 0xfe, 0xe6, 0x64, 0xf4, 0xeb, 0xfd]);
    expect(e820(m).some((e) => e.type === 2 && e.addr <= RESET_VECTOR_ADDR && e.addr + e.size >= RESET_VECTOR_ADDR + 16)).toBe(true);
    expect(m.readU32(zp + BP.extRamdiskImage)).toBe(0);
    expect(m.readU32(zp + BP.extRamdiskSize)).toBe(0);
    // The setup code after the declared header end (0xcc filler) is not copied.
    expect(m.read(zp + 0x26c, 0x24).every((b) => b === 0)).toBe(true);
    // Kernel payload at pref_address, entry at +0x200, RSI = zero page.
    expect(m.readU8(0x1000000)).toBe(0x5a);
    expect(r.entry).toBe(0x1000200);
    expect(r.bsp.regs.rip).toBe(0x1000200n);
    expect(r.bsp.regs.rsi).toBe(BigInt(zp));
    expect(e820(m)).toEqual([
      { addr: 0, size: 0x9fc00, type: 1 },
      { addr: 0x9fc00, size: 0x100000 - 0x9fc00, type: 2 },
      { addr: 0x100000, size: 128 * MiB - 0x100000, type: 1 },
    ]);
    // initramfs: page-aligned, ends at the top of low RAM, above the kernel.
    const img = m.readU32(zp + BP.ramdiskImage);
    expect(m.readU32(zp + BP.ramdiskSize)).toBe(0x12345);
    expect(img % 4096).toBe(0);
    expect(img + 0x12345).toBeLessThanOrEqual(128 * MiB);
    expect(128 * MiB - (img + 0x12345)).toBeLessThan(4096);
    expect(img).toBeGreaterThanOrEqual(r.kernelEnd);
    expect(m.read(img, 0x12345)).toEqual(pattern(0x12345));
  });

  it('reports RAM above 4 GiB in e820 for 5 GiB and keeps the initramfs under initrd_addr_max', () => {
    const o = opts(5 * GiB, { kernel: makeBzImage({ initSize: 0x800000, initrdAddrMax: 0x37ffffff }), initramfs: pattern(0x3000) });
    const r = layoutGuest(o);
    expect(e820(o.memory)).toEqual([
      { addr: 0, size: 0x9fc00, type: 1 },
      { addr: 0x9fc00, size: 0x60400, type: 2 },
      { addr: 0x100000, size: 3 * GiB - 0x100000, type: 1 },
      { addr: 4 * GiB, size: 2 * GiB, type: 1 },
    ]);
    expect(r.initramfs!.addr + 0x3000).toBeLessThanOrEqual(0x38000000);
    expect(r.initramfs!.addr).toBe(0x38000000 - 0x3000);
  });

  it('places the initramfs below min(initrd_addr_max, top of low RAM) when RAM is above 3 GiB', () => {
    const capped = layoutGuest(opts(5 * GiB, { initramfs: pattern(0x1001) }));
    expect(capped.initramfs).toEqual({ addr: 2 * GiB - 0x2000, size: 0x1001 });
    const o = opts(5 * GiB, { kernel: makeBzImage({ initSize: 0x800000, initrdAddrMax: 0xffffffff }), initramfs: pattern(0x1001) });
    const r = layoutGuest(o);
    expect(r.initramfs).toEqual({ addr: 3 * GiB - 0x2000, size: 0x1001 });
    expect(o.memory.read(r.initramfs!.addr, 0x1001)).toEqual(pattern(0x1001));
  });

  it('rejects an initramfs that would overlap the kernel', () => {
    expect(() => layoutGuest(opts(32 * MiB, { initramfs: new Uint8Array(20 * MiB) }))).toThrow(BootLayoutError);
  });

  it('enforces the kernel\'s cmdline_size and honours appendVirtioMmioCmdline=false', () => {
    expect(() => layoutGuest(opts(64 * MiB, { kernel: makeBzImage({ cmdlineSize: 40 }) }))).toThrow(CommandLineError);
    const o = opts(64 * MiB, { kernel: makeBzImage({ cmdlineSize: 40 }), appendVirtioMmioCmdline: false });
    const r = layoutGuest(o);
    expect(r.cmdline).toBe('console=ttyS0 panic=-1');
    expect(o.memory.readU32(ZERO_PAGE_ADDR + BP.cmdlineSize)).toBe(40);
  });

  it('validates vCPU count and device GSIs', () => {
    expect(() => layoutGuest(opts(64 * MiB, { vcpus: 0 }))).toThrow(BootLayoutError);
    expect(() => layoutGuest(opts(64 * MiB, { vcpus: 255 }))).toThrow(BootLayoutError);
    expect(() => layoutGuest(opts(64 * MiB, { virtioDevices: [{ base: 0xd0000000, size: 0x1000, gsi: 4 }] }))).toThrow(/GSI/);
    expect(() => layoutGuest(opts(64 * MiB, { virtioDevices: [{ base: 0xd0000000, size: 0x1000, gsi: 24 }] }))).toThrow(/GSI/);
    expect(() => layoutGuest(opts(1 * MiB))).toThrow(/at least/);
  });
});

describe('layoutGuest with ELF kernels', () => {
  it('boots a vmlinux without a PVH note through its 64-bit entry with a synthetic zero page', () => {
    const kernel = makeElf({ entry: 0xffffffff81000000n, segments: [{ paddr: 0x1000000, vaddr: 0xffffffff81000000n, data: pattern(0x1000) }] });
    const o = opts(64 * MiB, { kernel, initramfs: pattern(100) });
    const r = layoutGuest(o);
    expect(r.bootProtocol).toBe('linux64');
    expect(r.bsp.regs.rip).toBe(0x1000000n);
    expect(o.memory.readU16(ZERO_PAGE_ADDR + BP.bootFlag)).toBe(0xaa55);
    expect(o.memory.readU32(ZERO_PAGE_ADDR + BP.header)).toBe(0x53726448);
    expect(o.memory.readU8(ZERO_PAGE_ADDR + BP.typeOfLoader)).toBe(0xff);
    expect(o.memory.readU32(ZERO_PAGE_ADDR + BP.cmdlineSize)).toBe(2047);
    expect(o.memory.readU32(ZERO_PAGE_ADDR + BP.ramdiskSize)).toBe(100);
    expect(r.bsp.sregs.efer & 0x500n).toBe(0x500n);
    // Without a header the limit is Linux's COMMAND_LINE_SIZE - 1.
    expect(() => layoutGuest(opts(64 * MiB, { kernel, cmdline: 'x'.repeat(2048), appendVirtioMmioCmdline: false }))).toThrow(CommandLineError);
    expect(layoutGuest(opts(64 * MiB, { kernel, cmdline: 'x'.repeat(2047), appendVirtioMmioCmdline: false })).cmdline).toHaveLength(2047);
  });

  it('boots PVH when the note is present: start_info, module list, memory map, EBX', () => {
    const kernel = makeElf({ entry: 0x100000n, segments: [{ paddr: 0x100000, data: pattern(0x800) }], pvhEntry: 0x100020 });
    const o = opts(5 * GiB, { kernel, initramfs: pattern(0x2000), vcpus: 2 });
    const r = layoutGuest(o);
    const m = o.memory;
    expect(r.bootProtocol).toBe('pvh');
    expect(r.bsp.regs.rip).toBe(0x100020n);
    expect(r.bsp.regs.rbx).toBe(BigInt(PVH_START_INFO_ADDR));
    expect(r.bsp.sregs.cr0 & 0x80000001n).toBe(1n);
    const si = PVH_START_INFO_ADDR;
    expect(m.readU32(si)).toBe(HVM_START_MAGIC);
    expect(m.readU32(si + 4)).toBe(1);
    expect(m.readU32(si + 12)).toBe(1);
    expect(m.readU64(si + 16)).toBe(BigInt(PVH_MODLIST_ADDR));
    expect(m.readU64(si + 24)).toBe(BigInt(CMDLINE_ADDR));
    expect(m.readU64(si + 32)).toBe(BigInt(RSDP_ADDR));
    expect(m.readU64(si + 40)).toBe(BigInt(PVH_MEMMAP_ADDR));
    expect(m.readU32(si + 48)).toBe(4);
    expect(m.readU32(si + 52)).toBe(0);
    expect(m.readU64(PVH_MODLIST_ADDR)).toBe(BigInt(r.initramfs!.addr));
    expect(m.readU64(PVH_MODLIST_ADDR + 8)).toBe(0x2000n);
    const entries = Array.from({ length: 4 }, (_, i) => ({
      addr: Number(m.readU64(PVH_MEMMAP_ADDR + i * 24)),
      size: Number(m.readU64(PVH_MEMMAP_ADDR + i * 24 + 8)),
      type: m.readU32(PVH_MEMMAP_ADDR + i * 24 + 16),
    }));
    expect(entries).toEqual(r.memoryMap);
    expect(entries[3]).toEqual({ addr: 4 * GiB, size: 2 * GiB, type: 1 });
    expect(r.cpuidPerVcpu).toHaveLength(2);
    expect(r.apMpState).toBe(1);
  });

  it('boots the same PVH-capable ELF64 through startup_64 when preferPvh is false', () => {
    const kernel = makeElf({ entry: 0x1000000n, segments: [{ paddr: 0x1000000, data: pattern(0x800) }], pvhEntry: 0x1000040 });
    const o = opts(64 * MiB, { kernel, preferPvh: false });
    const r = layoutGuest(o);
    expect(r.bootProtocol).toBe('linux64');
    expect(r.bsp.regs.rip).toBe(0x1000000n);
    expect(r.bsp.sregs.cs.l).toBe(1);
    // An ELF32 has only the PVH entry, so it boots PVH whatever the preference.
    const e32 = makeElf({ elfClass: 32, entry: 0x100000n, segments: [{ paddr: 0x100000, data: pattern(0x800) }], pvhEntry: 0x100040 });
    expect(layoutGuest(opts(64 * MiB, { kernel: e32, preferPvh: false })).bootProtocol).toBe('pvh');
  });
});
