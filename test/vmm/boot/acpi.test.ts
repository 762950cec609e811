import { POWER_BUTTON_GSI, VMGENID_GSI } from '../../../src/memory/layout.js';
import { describe, expect, it } from 'vitest';
import { anonymousGuestMemory, type GuestMemory } from '../../../src/memory/guest-memory.js';
import { RSDP_ADDR, VMGENID_ADDR } from '../../../src/vmm/boot/addresses.js';
import { FADT_HW_REDUCED_ACPI, FADT_RESET_REG_SUP, writeAcpiTables } from '../../../src/vmm/boot/acpi.js';
import { eisaId, pkgLength } from '../../../src/vmm/boot/aml.js';
import { asciiAt, sum8 } from './fixtures.js';

const devices = [
  { base: 0xd0000000, size: 0x1000, gsi: 5 },
  { base: 0xd0001000, size: 0x1000, gsi: 6 },
];

/** Reads one SDT at `addr`, checking its length and checksum. */
function table(mem: GuestMemory, addr: number, sig: string): Uint8Array {
  const len = mem.readU32(addr + 4);
  const t = mem.read(addr, len);
  expect(asciiAt(t, 0, 4)).toBe(sig);
  expect(sum8(t)).toBe(0);
  return t;
}

function tablesByRsdp(mem: GuestMemory): Map<string, number> {
  const rsdp = mem.read(RSDP_ADDR, 36);
  expect(asciiAt(rsdp, 0, 8)).toBe('RSD PTR ');
  expect(rsdp[15]).toBe(2);
  expect(sum8(rsdp.subarray(0, 20))).toBe(0);
  expect(sum8(rsdp)).toBe(0);
  const dv = new DataView(rsdp.buffer);
  expect(dv.getUint32(20, true)).toBe(36);
  const xsdtAddr = Number(dv.getBigUint64(24, true));
  const xsdt = table(mem, xsdtAddr, 'XSDT');
  const out = new Map<string, number>();
  const xdv = new DataView(xsdt.buffer);
  for (let o = 36; o < xsdt.length; o += 8) {
    const a = Number(xdv.getBigUint64(o, true));
    out.set(asciiAt(mem.read(a, 4), 0, 4), a);
  }
  return out;
}

/** A minimal AML reader for what the DSDT uses: finds Device() blocks and their named objects. */
function readPkgLength(b: Uint8Array, o: number): { len: number; size: number } {
  const lead = b[o]!;
  const extra = lead >> 6;
  if (extra === 0) return { len: lead & 0x3f, size: 1 };
  let len = lead & 0xf;
  for (let i = 1; i <= extra; i++) len |= b[o + i]! << (4 + 8 * (i - 1));
  return { len, size: 1 + extra };
}

type AmlValue = string | number | Uint8Array | AmlValue[];
interface AmlDevice { name: string; hid: string | number; uid: number; crs?: Uint8Array; names: Record<string, AmlValue>; methods?: Record<string, { flags: number; body: Uint8Array }> }

/** One data object: a string, an integer, a buffer or a package of them. */
function readValue(aml: Uint8Array, p: number, where: string): { value: AmlValue; next: number } {
  const op = aml[p]!;
  if (op === 0x0d) { const z = aml.indexOf(0, p); return { value: asciiAt(aml, p + 1, z - p - 1), next: z + 1 }; }
  if (op === 0x00 || op === 0x01) return { value: op, next: p + 1 };
  if (op === 0x0a) return { value: aml[p + 1]!, next: p + 2 };
  if (op === 0x0b) return { value: aml[p + 1]! | (aml[p + 2]! << 8), next: p + 3 };
  if (op === 0x0c) return { value: new DataView(aml.buffer, aml.byteOffset).getUint32(p + 1, true), next: p + 5 };
  if (op === 0x11) {
    const bl = readPkgLength(aml, p + 1);
    const body = aml.subarray(p + 1 + bl.size, p + 1 + bl.len);
    expect(body[0]).toBe(0x0a); // BufferSize as a byte
    return { value: body.subarray(2, 2 + body[1]!), next: p + 1 + bl.len };
  }
  if (op === 0x12) { // PackageOp: PkgLength, NumElements, elements
    const pl = readPkgLength(aml, p + 1);
    const count = aml[p + 1 + pl.size]!;
    const elements: AmlValue[] = [];
    let q = p + 2 + pl.size;
    for (let i = 0; i < count; i++) {
      const e = readValue(aml, q, where);
      elements.push(e.value);
      q = e.next;
    }
    expect(q).toBe(p + 1 + pl.len);
    return { value: elements, next: q };
  }
  throw new Error(`unexpected AML op 0x${op.toString(16)} in ${where}`);
}

function readDevices(aml: Uint8Array): AmlDevice[] {
  const out: AmlDevice[] = [];
  for (let o = 0; o < aml.length - 1; o++) {
    if (aml[o] !== 0x5b || aml[o + 1] !== 0x82) continue;
    const pl = readPkgLength(aml, o + 2);
    const end = o + 2 + pl.len;
    const name = asciiAt(aml, o + 2 + pl.size, 4);
    const dev: Partial<AmlDevice> = { name };
    let p = o + 2 + pl.size + 4;
    while (p < end) {
      if (aml[p] === 0x14) { // MethodOp: PkgLength, NameSeg, flags, body
        const ml = readPkgLength(aml, p + 1);
        const start = p + 1 + ml.size;
        (dev.methods ??= {})[asciiAt(aml, start, 4)] = { flags: aml[start + 4]!, body: aml.subarray(start + 5, p + 1 + ml.len) };
        p = p + 1 + ml.len;
        continue;
      }
      expect(aml[p]).toBe(0x08); // NameOp
      const n = asciiAt(aml, p + 1, 4);
      const read = readValue(aml, p + 5, `${name}.${n}`);
      p = read.next;
      (dev.names ??= {})[n] = read.value;
      if (n === '_HID') dev.hid = read.value as string | number;
      if (n === '_UID') dev.uid = read.value as number;
      if (n === '_CRS') dev.crs = read.value as Uint8Array;
    }
    expect(p).toBe(end);
    out.push(dev as AmlDevice);
  }
  return out;
}

describe('ACPI tables', () => {
  it('RSDP v2 → XSDT → FADT/MADT, FADT → DSDT, every checksum right', () => {
    const mem = anonymousGuestMemory([{ guestBase: 0, size: 2 << 20 }]);
    const layout = writeAcpiTables(mem, 2, devices);
    const byName = tablesByRsdp(mem);
    expect([...byName.keys()].sort()).toEqual(['APIC', 'FACP']);
    const fadt = table(mem, byName.get('FACP')!, 'FACP');
    expect(fadt.length).toBe(276);
    expect(fadt[8]).toBe(6);
    const f = new DataView(fadt.buffer);
    expect(f.getUint32(112, true) & FADT_HW_REDUCED_ACPI).toBe(FADT_HW_REDUCED_ACPI);
    // RESET_REG: system I/O, 8 bits, byte access, port 0x3c2; RESET_VALUE 1.
    expect(f.getUint32(112, true) & FADT_RESET_REG_SUP).toBe(FADT_RESET_REG_SUP);
    expect([...fadt.subarray(116, 120)]).toEqual([1, 8, 0, 1]);
    expect(Number(f.getBigUint64(120, true))).toBe(0x3c2);
    expect(fadt[128]).toBe(1);
    expect(f.getUint32(40, true)).toBe(layout.dsdt);
    expect(Number(f.getBigUint64(140, true))).toBe(layout.dsdt);
    // SLEEP_CONTROL_REG / SLEEP_STATUS_REG: system I/O, 8 bits, byte access, ports 0x3c0 / 0x3c1.
    expect([...fadt.subarray(244, 248)]).toEqual([1, 8, 0, 1]);
    expect(Number(f.getBigUint64(248, true))).toBe(0x3c0);
    expect([...fadt.subarray(256, 260)]).toEqual([1, 8, 0, 1]);
    expect(Number(f.getBigUint64(260, true))).toBe(0x3c1);
    table(mem, layout.dsdt, 'DSDT');
    expect(layout.end).toBeLessThanOrEqual(0xf0000);
  });

  for (const vcpus of [1, 2]) {
    it(`MADT for ${vcpus} vCPU(s): local APICs, IOAPIC, IRQ0 override, LINT1 NMI`, () => {
      const mem = anonymousGuestMemory([{ guestBase: 0, size: 2 << 20 }]);
      const layout = writeAcpiTables(mem, vcpus, devices);
      const madt = table(mem, layout.madt, 'APIC');
      const dv = new DataView(madt.buffer);
      expect(dv.getUint32(36, true)).toBe(0xfee00000);
      const seen: Array<Record<string, number>> = [];
      for (let o = 44; o < madt.length; o += madt[o + 1]!) {
        const t = madt[o]!;
        if (t === 0) seen.push({ t, uid: madt[o + 2]!, apic: madt[o + 3]!, flags: dv.getUint32(o + 4, true) });
        else if (t === 1) seen.push({ t, id: madt[o + 2]!, addr: dv.getUint32(o + 4, true), gsiBase: dv.getUint32(o + 8, true) });
        else if (t === 2) seen.push({ t, bus: madt[o + 2]!, src: madt[o + 3]!, gsi: dv.getUint32(o + 4, true), flags: dv.getUint16(o + 8, true) });
        else if (t === 4) seen.push({ t, uid: madt[o + 2]!, flags: dv.getUint16(o + 3, true), lint: madt[o + 5]! });
        else throw new Error(`unexpected MADT entry ${t}`);
      }
      expect(seen).toEqual([
        ...Array.from({ length: vcpus }, (_, i) => ({ t: 0, uid: i, apic: i, flags: 1 })),
        { t: 1, id: vcpus, addr: 0xfec00000, gsiBase: 0 },
        { t: 2, bus: 0, src: 0, gsi: 2, flags: 0 },
        { t: 4, uid: 0xff, flags: 0, lint: 1 },
      ]);
    });
  }

  it('DSDT names each virtio-mmio device (LNRO0005) with its window and GSI, and COM1', () => {
    const mem = anonymousGuestMemory([{ guestBase: 0, size: 2 << 20 }]);
    const layout = writeAcpiTables(mem, 1, devices);
    const dsdt = table(mem, layout.dsdt, 'DSDT');
    expect(dsdt[8]).toBe(2);
    // Name(\_S5_, Package(){5, 0}): the soft-off sleep type for the sleep control register.
    expect([...dsdt.subarray(36, 48)]).toEqual([0x08, 0x5c, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x05, 0x02, 0x0a, 0x05, 0x00]);
    const body = dsdt.subarray(48);
    expect(body[0]).toBe(0x10); // Scope
    const sp = readPkgLength(body, 1);
    expect(1 + sp.len).toBe(body.length);
    expect(asciiAt(body, 1 + sp.size, 5)).toBe('\\_SB_');
    const devs = readDevices(body);
    expect(devs.map((d) => d.name)).toEqual(['VR00', 'VR01', 'COM1', 'PWRB', 'VGEN', 'GED0']);
    devices.forEach((d, i) => {
      const dev = devs[i]!;
      expect(dev.hid).toBe('LNRO0005');
      expect(dev.uid).toBe(i);
      const crs = dev.crs!;
      const c = new DataView(crs.buffer, crs.byteOffset, crs.byteLength);
      expect(crs[0]).toBe(0x86);
      expect(c.getUint32(4, true)).toBe(d.base);
      expect(c.getUint32(8, true)).toBe(0x1000);
      expect(crs[12]).toBe(0x89);
      expect(crs[15]).toBe(0x03); // consumer, edge, active high, exclusive
      expect(crs[16]).toBe(1);
      expect(c.getUint32(17, true)).toBe(d.gsi);
      expect([...crs.subarray(21)]).toEqual([0x79, 0]);
    });
    const com = devs[2]!;
    expect(com.hid).toBe(0x0105d041);
    expect([...com.crs!]).toEqual([0x47, 1, 0xf8, 0x03, 0xf8, 0x03, 1, 8, 0x22, 0x10, 0, 0x79, 0]);
    // The power button (EisaId PNP0C0C), the generation ID device (what Linux's vmgenid driver
    // matches, and the ID's address as a package of low and high halves), and the generic event
    // device whose interrupts notify them.
    const [pwrb, vgen, ged] = [devs[3]!, devs[4]!, devs[5]!];
    expect(pwrb.hid).toBe(0x0c0cd041);
    expect(vgen.names).toEqual({ _HID: 'TSVMVGID', _CID: 'VM_GEN_COUNTER', _DDN: 'VM_GEN_COUNTER', ADDR: [VMGENID_ADDR, 0] });
    expect(ged.hid).toBe('ACPI0013');
    expect([...ged.crs!]).toEqual([0x89, 6, 0, 0x03, 1, VMGENID_GSI, 0, 0, 0, 0x89, 6, 0, 0x03, 1, POWER_BUTTON_GSI, 0, 0, 0, 0x79, 0]);
    // Method(_EVT, 1, Serialized) {
    //   If (LEqual(Arg0, 22)) { Notify(\_SB_.VGEN, 0x80) }  If (LEqual(Arg0, 23)) { Notify(\_SB_.PWRB, 0x80) } }
    expect(ged.methods?.['_EVT']?.flags).toBe(0x09);
    const notifyIf = (gsi: number, dev: string): number[] => {
      const inner = [0x93, 0x68, 0x0a, gsi, 0x86, 0x5c, 0x2e, ...Buffer.from(`_SB_${dev}`), 0x0a, 0x80];
      return [0xa0, inner.length + 1, ...inner];
    };
    expect([...ged.methods!['_EVT']!.body]).toEqual([...notifyIf(VMGENID_GSI, 'VGEN'), ...notifyIf(POWER_BUTTON_GSI, 'PWRB')]);
  });

  it('encodes PkgLength in 1–4 bytes and EISA ids', () => {
    expect([...pkgLength(10)]).toEqual([11]);
    expect([...pkgLength(62)]).toEqual([63]);
    const two = pkgLength(100);
    expect(two.length).toBe(2);
    expect(readPkgLength(two, 0).len).toBe(102);
    const three = pkgLength(5000);
    expect(three.length).toBe(3);
    expect(readPkgLength(three, 0).len).toBe(5003);
    expect([...eisaId('PNP0501')]).toEqual([0x0c, 0x41, 0xd0, 0x05, 0x01]);
  });

  it('keeps large DSDTs (many devices) well-formed', () => {
    const many = Array.from({ length: 17 }, (_, i) => ({ base: 0xd0000000 + i * 0x1000, size: 0x1000, gsi: 5 + i }));
    const mem = anonymousGuestMemory([{ guestBase: 0, size: 2 << 20 }]);
    const layout = writeAcpiTables(mem, 2, many);
    const dsdt = table(mem, layout.dsdt, 'DSDT');
    expect(readDevices(dsdt.subarray(36)).map((d) => d.name)).toHaveLength(21);
  });
});
