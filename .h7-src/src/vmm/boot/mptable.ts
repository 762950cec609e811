/**
 * Intel MultiProcessor Specification 1.4 tables: the 16-byte floating pointer at MPTABLE_ADDR and
 * the configuration table right after it, describing the vCPUs, one ISA bus, the IOAPIC and how
 * interrupts reach it. Kernels built without ACPI (or booted with acpi=off) find CPUs here.
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import { IOAPIC_BASE, LAPIC_BASE } from '../../memory/layout.js';
import { MPTABLE_ADDR, MPTABLE_SIZE } from './addresses.js';
import { ByteWriter, checksumByte } from './table-writer.js';
import { BootLayoutError } from './errors.js';

export const MP_FLOATING_SIZE = 16;
const MP_SPEC_REV = 4;
const ENTRY_PROCESSOR = 0;
const ENTRY_BUS = 1;
const ENTRY_IOAPIC = 2;
const ENTRY_IO_INTERRUPT = 3;
const ENTRY_LOCAL_INTERRUPT = 4;
export const INT_TYPE_INT = 0;
export const INT_TYPE_NMI = 1;
export const INT_TYPE_EXTINT = 3;
const CPU_ENABLED = 1;
const CPU_BOOTSTRAP = 2;
const LAPIC_VERSION = 0x14;
const IOAPIC_VERSION = 0x11;
export const IOAPIC_PINS = 24;
const ISA_BUS_ID = 0;
/** Polarity active high (bits 1:0 = 01), trigger edge (bits 3:2 = 01). */
const FLAGS_EDGE_HIGH = 0x5;
/** Family 6 signature and FPU|APIC feature bits: what firmware reports for a modern x86 CPU. */
const CPU_SIGNATURE = 0x600;
const CPU_FEATURES = 0x201;

export interface MpTableParams {
  readonly vcpus: number;
  /** GSIs of edge-triggered devices (virtio-mmio) beyond the 16 ISA lines; all < 24. */
  readonly extraGsis: readonly number[];
}

/** The IOAPIC's id in the MP table: the first one after the vCPUs' APIC ids. */
export function ioapicId(vcpus: number): number {
  return vcpus;
}

export function buildMpTable(p: MpTableParams, at = MPTABLE_ADDR): Uint8Array {
  if (!Number.isInteger(p.vcpus) || p.vcpus < 1 || p.vcpus > 254) throw new BootLayoutError(`MP table supports 1..254 vCPUs, not ${p.vcpus}`);
  const cfg = new ByteWriter();
  cfg.ascii('PCMP', 4).u16(0).u8(MP_SPEC_REV).u8(0).ascii('TSVMM', 8).ascii('MICROVM', 12)
    .u32(0).u16(0).u16(0).u32(LAPIC_BASE).u16(0).u8(0).u8(0);
  let count = 0;
  for (let i = 0; i < p.vcpus; i++) {
    cfg.u8(ENTRY_PROCESSOR).u8(i).u8(LAPIC_VERSION).u8(CPU_ENABLED | (i === 0 ? CPU_BOOTSTRAP : 0))
      .u32(CPU_SIGNATURE).u32(CPU_FEATURES).u32(0).u32(0);
    count++;
  }
  cfg.u8(ENTRY_BUS).u8(ISA_BUS_ID).ascii('ISA', 6);
  count++;
  const apicId = ioapicId(p.vcpus);
  cfg.u8(ENTRY_IOAPIC).u8(apicId).u8(IOAPIC_VERSION).u8(1).u32(IOAPIC_BASE);
  count++;
  const ioInt = (type: number, flags: number, srcIrq: number, pin: number): void => {
    cfg.u8(ENTRY_IO_INTERRUPT).u8(type).u16(flags).u8(ISA_BUS_ID).u8(srcIrq).u8(apicId).u8(pin);
    count++;
  };
  // Like a PC: the 8259 output on pin 0, the PIT (IRQ0) on pin 2, other ISA IRQs identity.
  ioInt(INT_TYPE_EXTINT, 0, 0, 0);
  ioInt(INT_TYPE_INT, 0, 0, 2);
  for (let irq = 1; irq < 16; irq++) if (irq !== 2) ioInt(INT_TYPE_INT, 0, irq, irq);
  for (const gsi of [...new Set(p.extraGsis)].sort((a, b) => a - b)) {
    if (!Number.isInteger(gsi) || gsi < 0 || gsi >= IOAPIC_PINS) throw new BootLayoutError(`GSI ${gsi} is not an IOAPIC pin (0..${IOAPIC_PINS - 1})`);
    if (gsi >= 16) ioInt(INT_TYPE_INT, FLAGS_EDGE_HIGH, gsi, gsi);
  }
  const lint = (type: number, pin: number): void => {
    cfg.u8(ENTRY_LOCAL_INTERRUPT).u8(type).u16(0).u8(ISA_BUS_ID).u8(0).u8(0xff).u8(pin);
    count++;
  };
  lint(INT_TYPE_EXTINT, 0);
  lint(INT_TYPE_NMI, 1);
  cfg.setU16(4, cfg.length);
  cfg.setU16(34, count);
  cfg.setU8(7, checksumByte(cfg.finish()));

  const table = cfg.finish();
  const total = MP_FLOATING_SIZE + table.length;
  if (total > MPTABLE_SIZE) throw new BootLayoutError(`MP table for ${p.vcpus} vCPUs needs ${total} bytes; only ${MPTABLE_SIZE} are set aside`);
  const fp = new ByteWriter();
  fp.ascii('_MP_', 4).u32(at + MP_FLOATING_SIZE).u8(1).u8(MP_SPEC_REV).u8(0).u8(0).u8(0).u8(0).u8(0).u8(0);
  fp.setU8(10, checksumByte(fp.finish()));
  const out = new Uint8Array(total);
  out.set(fp.finish());
  out.set(table, MP_FLOATING_SIZE);
  return out;
}

export function writeMpTable(memory: GuestMemory, p: MpTableParams): void {
  memory.write(MPTABLE_ADDR, buildMpTable(p));
}
