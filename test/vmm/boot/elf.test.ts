import { describe, expect, it } from 'vitest';
import { anonymousGuestMemory } from '../../../src/memory/guest-memory.js';
import { BootLayoutError, KernelFormatError } from '../../../src/vmm/boot/errors.js';
import { loadElf, parseElf } from '../../../src/vmm/boot/elf.js';
import { loadKernel } from '../../../src/vmm/boot/kernel.js';
import { makeElf, pattern } from './fixtures.js';

const MiB = 1 << 20;

describe('ELF kernels', () => {
  it('translates a virtual e_entry to physical and finds no PVH note', () => {
    const img = makeElf({
      entry: 0xffffffff81000100n,
      segments: [{ paddr: 0x1000000, vaddr: 0xffffffff81000000n, data: pattern(0x3000), memsz: 0x5000 }],
    });
    const elf = parseElf(img);
    expect(elf.elfClass).toBe(64);
    expect(elf.entry).toBe(0x1000100);
    expect(elf.pvhEntry).toBeUndefined();
    expect(elf.loadEnd).toBe(0x1005000);
  });

  it('keeps a physical e_entry (what Linux emits)', () => {
    const img = makeElf({ entry: 0x1000000n, segments: [{ paddr: 0x1000000, vaddr: 0xffffffff81000000n, data: pattern(0x100) }] });
    expect(parseElf(img).entry).toBe(0x1000000);
  });

  it('finds the Xen PHYS32_ENTRY note in ELF64 and ELF32 (4- and 8-byte descriptors)', () => {
    const seg = [{ paddr: 0x100000, data: pattern(0x200) }];
    expect(parseElf(makeElf({ entry: 0x100000n, segments: seg, pvhEntry: 0x100040 })).pvhEntry).toBe(0x100040);
    expect(parseElf(makeElf({ entry: 0x100000n, segments: seg, pvhEntry: 0x100080, pvhDescSize: 8 })).pvhEntry).toBe(0x100080);
    const e32 = parseElf(makeElf({ elfClass: 32, entry: 0x100000n, segments: seg, pvhEntry: 0x100010 }));
    expect(e32.elfClass).toBe(32);
    expect(e32.pvhEntry).toBe(0x100010);
  });

  it('loads segments at p_paddr and zeroes bss', () => {
    const mem = anonymousGuestMemory([{ guestBase: 0, size: 32 * MiB }]);
    mem.fill(0x1000000, 0x5000, 0xee);
    const data = pattern(0x3000, 9);
    const img = makeElf({ entry: 0x1000000n, segments: [{ paddr: 0x1000000, data, memsz: 0x5000 }] });
    const k = loadKernel(mem, img, 32 * MiB);
    expect(k.entry64).toBe(0x1000000);
    expect(k.kernelEnd).toBe(0x1005000);
    expect(mem.read(0x1000000, 0x3000)).toEqual(data);
    expect(mem.read(0x1003000, 0x2000).every((b) => b === 0)).toBe(true);
  });

  it('rejects segments outside RAM or below 1 MiB', () => {
    const mem = anonymousGuestMemory([{ guestBase: 0, size: 8 * MiB }]);
    const high = makeElf({ entry: 0x1000000n, segments: [{ paddr: 0x1000000, data: pattern(16) }] });
    expect(() => loadElf(mem, high, parseElf(high))).toThrow(BootLayoutError);
    const low = makeElf({ entry: 0x8000n, segments: [{ paddr: 0x8000, data: pattern(16) }] });
    expect(() => loadElf(mem, low, parseElf(low))).toThrow(/at or above 1 MiB/);
  });

  it('rejects ELF32 without a PVH note, foreign architectures and truncation', () => {
    const mem = anonymousGuestMemory([{ guestBase: 0, size: 8 * MiB }]);
    const e32 = makeElf({ elfClass: 32, entry: 0x100000n, segments: [{ paddr: 0x100000, data: pattern(64) }] });
    expect(() => loadKernel(mem, e32, 8 * MiB)).toThrow(/PVH/);
    const arm = makeElf({ machine: 183, entry: 0x100000n, segments: [{ paddr: 0x100000, data: pattern(64) }] });
    expect(() => parseElf(arm)).toThrow(/another architecture/);
    const ok = makeElf({ entry: 0x100000n, segments: [{ paddr: 0x100000, data: pattern(0x400) }] });
    expect(() => parseElf(ok.subarray(0, ok.length - 1))).toThrow(/truncated/);
    expect(() => parseElf(ok.subarray(0, 40))).toThrow(/truncated/);
    expect(() => parseElf(makeElf({ entry: 0x5000000n, segments: [{ paddr: 0x100000, data: pattern(64) }] }))).toThrow(KernelFormatError);
  });

  it('rejects a note that claims more bytes than its segment holds', () => {
    const img = makeElf({ entry: 0x100000n, segments: [{ paddr: 0x100000, data: pattern(64) }], pvhEntry: 0x100000 });
    // The first note (GNU) sits at the PT_NOTE offset; corrupt its descsz.
    const dv = new DataView(img.buffer);
    const phoff = 64 + 56; // second program header
    const noteOff = Number(dv.getBigUint64(phoff + 8, true));
    dv.setUint32(noteOff + 4, 0x10000, true);
    expect(() => parseElf(img)).toThrow(/note/);
  });
});
