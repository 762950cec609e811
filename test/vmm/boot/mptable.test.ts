import { describe, expect, it } from 'vitest';
import { anonymousGuestMemory } from '../../../src/memory/guest-memory.js';
import { MPTABLE_ADDR } from '../../../src/vmm/boot/addresses.js';
import { buildMpTable, writeMpTable } from '../../../src/vmm/boot/mptable.js';
import { asciiAt, sum8 } from './fixtures.js';

interface Parsed {
  cpus: Array<{ apicId: number; flags: number }>;
  buses: string[];
  ioapics: Array<{ id: number; flags: number; addr: number }>;
  ioInts: Array<{ type: number; flags: number; srcIrq: number; apic: number; pin: number }>;
  localInts: Array<{ type: number; dstApic: number; pin: number }>;
  lapic: number;
}

/** An independent reader of the MP 1.4 format: checks signatures, lengths and both checksums. */
function parseMp(mem: ReturnType<typeof anonymousGuestMemory>): Parsed {
  const fp = mem.read(MPTABLE_ADDR, 16);
  expect(asciiAt(fp, 0, 4)).toBe('_MP_');
  expect(fp[8]).toBe(1);
  expect(fp[9]).toBe(4);
  expect(sum8(fp)).toBe(0);
  const cfgAddr = new DataView(fp.buffer).getUint32(4, true);
  const baseLen = mem.readU16(cfgAddr + 4);
  const cfg = mem.read(cfgAddr, baseLen);
  const dv = new DataView(cfg.buffer);
  expect(asciiAt(cfg, 0, 4)).toBe('PCMP');
  expect(cfg[6]).toBe(4);
  expect(sum8(cfg)).toBe(0);
  const count = dv.getUint16(34, true);
  const out: Parsed = { cpus: [], buses: [], ioapics: [], ioInts: [], localInts: [], lapic: dv.getUint32(36, true) };
  let o = 44;
  for (let i = 0; i < count; i++) {
    const t = cfg[o]!;
    if (t === 0) { out.cpus.push({ apicId: cfg[o + 1]!, flags: cfg[o + 3]! }); o += 20; continue; }
    if (t === 1) out.buses.push(asciiAt(cfg, o + 2, 6));
    else if (t === 2) out.ioapics.push({ id: cfg[o + 1]!, flags: cfg[o + 3]!, addr: dv.getUint32(o + 4, true) });
    else if (t === 3) out.ioInts.push({ type: cfg[o + 1]!, flags: dv.getUint16(o + 2, true), srcIrq: cfg[o + 5]!, apic: cfg[o + 6]!, pin: cfg[o + 7]! });
    else if (t === 4) out.localInts.push({ type: cfg[o + 1]!, dstApic: cfg[o + 6]!, pin: cfg[o + 7]! });
    else throw new Error(`unknown MP entry type ${t}`);
    o += 8;
  }
  expect(o).toBe(baseLen);
  return out;
}

describe('MP table', () => {
  for (const vcpus of [1, 2]) {
    it(`describes ${vcpus} vCPU(s), the ISA bus, the IOAPIC and its routing with correct checksums`, () => {
      const mem = anonymousGuestMemory([{ guestBase: 0, size: 2 << 20 }]);
      writeMpTable(mem, { vcpus, extraGsis: [5, 6, 17] });
      const p = parseMp(mem);
      expect(p.lapic).toBe(0xfee00000);
      expect(p.cpus).toEqual(Array.from({ length: vcpus }, (_, i) => ({ apicId: i, flags: i === 0 ? 3 : 1 })));
      expect(p.buses).toEqual(['ISA   ']);
      expect(p.ioapics).toEqual([{ id: vcpus, flags: 1, addr: 0xfec00000 }]);
      for (const e of p.ioInts) expect(e.apic).toBe(vcpus);
      const route = new Map(p.ioInts.filter((e) => e.type === 0).map((e) => [e.srcIrq, e.pin]));
      expect(route.get(0)).toBe(2);
      for (const irq of [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]) expect(route.get(irq)).toBe(irq);
      expect(route.has(2)).toBe(false);
      expect(route.get(17)).toBe(17);
      expect(p.ioInts.find((e) => e.srcIrq === 17)!.flags).toBe(5);
      expect(p.ioInts.filter((e) => e.type === 3)).toEqual([{ type: 3, flags: 0, srcIrq: 0, apic: vcpus, pin: 0 }]);
      expect(p.localInts).toEqual([{ type: 3, dstApic: 0xff, pin: 0 }, { type: 1, dstApic: 0xff, pin: 1 }]);
    });
  }

  it('detects a corrupted table (the checks are not vacuous)', () => {
    const t = buildMpTable({ vcpus: 2, extraGsis: [] });
    expect(sum8(t.subarray(0, 16))).toBe(0);
    expect(sum8(t.subarray(16))).toBe(0);
    t[16 + 50] = t[16 + 50]! ^ 1;
    expect(sum8(t.subarray(16))).not.toBe(0);
  });

  it('rejects bad vCPU counts and GSIs', () => {
    expect(() => buildMpTable({ vcpus: 0, extraGsis: [] })).toThrow();
    expect(() => buildMpTable({ vcpus: 1, extraGsis: [24] })).toThrow(/GSI/);
  });
});
