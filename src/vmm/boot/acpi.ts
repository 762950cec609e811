/**
 * ACPI tables: RSDP (revision 2) at RSDP_ADDR → XSDT → FADT (revision 6, hardware-reduced, so no
 * PM/GPE ports are needed) → DSDT, and the MADT. The DSDT names the virtio-mmio devices
 * (LNRO0005) and COM1 so stock kernels, which lack virtio_mmio.device= support, still find them,
 * the power button and the VM generation ID. On a hardware-reduced platform there is no fixed
 * power button, so an ACPI generic event device (GED, ACPI0013) owns an interrupt per event, and
 * its event method notifies, by interrupt, the button device (PNP0C0C, for which the guest's
 * button driver reports KEY_POWER) or the generation ID device (VM_GEN_COUNTER, whose driver
 * reseeds the guest's RNG).
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import {
  ACPI_RESET_PORT, ACPI_RESET_VALUE, ACPI_S5_SLEEP_TYPE, ACPI_SLEEP_CONTROL_PORT, ACPI_SLEEP_STATUS_PORT, IOAPIC_BASE, LAPIC_BASE,
  POWER_BUTTON_GSI, VMGENID_GSI,
} from '../../memory/layout.js';
import { ACPI_AREA_SIZE, RSDP_ADDR, VMGENID_ADDR } from './addresses.js';
import * as aml from './aml.js';
import { ByteWriter, checksumByte } from './table-writer.js';
import type { VirtioMmioDevice } from './cmdline.js';
import { BootLayoutError } from './errors.js';
import { ioapicId } from './mptable.js';

export const ACPI_HEADER_SIZE = 36;
export const RSDP_SIZE = 36;
export const FADT_SIZE = 276;
const OEM_ID = 'TSVMM';
const CREATOR_ID = 'TSVM';
/** FADT flags bit 20: hardware-reduced ACPI. */
export const FADT_HW_REDUCED_ACPI = 1 << 20;
/** FADT flags bit 10: RESET_REG is supported. */
export const FADT_RESET_REG_SUP = 1 << 10;
/** IAPC_BOOT_ARCH: no VGA (bit 2), no CMOS RTC (bit 5): keeps the guest from probing them. */
const IAPC_BOOT_ARCH = (1 << 2) | (1 << 5);
const MADT_PCAT_COMPAT = 1;
const COM1_PORT = 0x3f8;
const COM1_IRQ = 4;

/** System description table: header + body, length and checksum filled in. */
function sdt(signature: string, revision: number, tableId: string, body: Uint8Array): Uint8Array {
  const w = new ByteWriter();
  w.ascii(signature, 4).u32(ACPI_HEADER_SIZE + body.length).u8(revision).u8(0)
    .ascii(OEM_ID, 6).ascii(tableId, 8).u32(1).ascii(CREATOR_ID, 4).u32(1).bytes(body);
  const t = w.finish();
  t[9] = checksumByte(t);
  return t;
}

export function buildRsdp(xsdtAddr: number): Uint8Array {
  const w = new ByteWriter();
  w.ascii('RSD PTR ', 8).u8(0).ascii(OEM_ID, 6).u8(2).u32(0).u32(RSDP_SIZE).u64(xsdtAddr).u8(0).u8(0).u8(0).u8(0);
  const t = w.finish();
  t[8] = checksumByte(t.subarray(0, 20));
  t[32] = checksumByte(t);
  return t;
}

export function buildXsdt(tables: readonly number[]): Uint8Array {
  const w = new ByteWriter();
  for (const a of tables) w.u64(a);
  return sdt('XSDT', 1, 'TSVMXSDT', w.finish());
}

export function buildFadt(dsdtAddr: number): Uint8Array {
  const body = new ByteWriter();
  body.bytes(new Uint8Array(FADT_SIZE - ACPI_HEADER_SIZE));
  const at = (off: number): number => off - ACPI_HEADER_SIZE;
  body.setU32(at(40), dsdtAddr); // DSDT
  body.setU16(at(109), IAPC_BOOT_ARCH);
  body.setU32(at(112), FADT_HW_REDUCED_ACPI | FADT_RESET_REG_SUP);
  body.setU8(at(128), ACPI_RESET_VALUE); // RESET_VALUE (RESET_REG is written below)
  body.setU8(at(131), 5); // FADT minor version: ACPI 6.5
  const x = new DataView(new ArrayBuffer(8));
  x.setBigUint64(0, BigInt(dsdtAddr), true);
  const b = body.finish();
  b.set(new Uint8Array(x.buffer), at(140)); // X_DSDT
  // Sleep control / status registers (GAS: system I/O, 8 bits, byte access): how a
  // hardware-reduced guest enters S5, i.e. powers off.
  // RESET_REG (offset 116) the same way: how Linux reboots (acpi_reboot) before any legacy method.
  for (const [off, port] of [[116, ACPI_RESET_PORT], [244, ACPI_SLEEP_CONTROL_PORT], [256, ACPI_SLEEP_STATUS_PORT]] as const) {
    const gas = new DataView(b.buffer, b.byteOffset + at(off), 12);
    gas.setUint8(0, 1);
    gas.setUint8(1, 8);
    gas.setUint8(2, 0);
    gas.setUint8(3, 1);
    gas.setBigUint64(4, BigInt(port), true);
  }
  b.set(new TextEncoder().encode('TSVMM\0\0\0'), at(268)); // hypervisor vendor identity
  return sdt('FACP', 6, 'TSVMFACP', b);
}

export function buildMadt(vcpus: number): Uint8Array {
  const w = new ByteWriter();
  w.u32(LAPIC_BASE).u32(MADT_PCAT_COMPAT);
  for (let i = 0; i < vcpus; i++) w.u8(0).u8(8).u8(i).u8(i).u32(1); // local APIC, enabled
  w.u8(1).u8(12).u8(ioapicId(vcpus)).u8(0).u32(IOAPIC_BASE).u32(0); // IOAPIC, GSI base 0
  w.u8(2).u8(10).u8(0).u8(0).u32(2).u16(0); // ISA IRQ0 → GSI 2, bus-default flags
  w.u8(4).u8(6).u8(0xff).u16(0).u8(1); // NMI on LINT1 of every processor
  return sdt('APIC', 5, 'TSVMAPIC', w.finish());
}

export function virtioDeviceName(i: number): string {
  return `VR${i.toString(16).toUpperCase().padStart(2, '0')}`;
}

export function buildDsdt(devices: readonly VirtioMmioDevice[]): Uint8Array {
  if (devices.length > 256) throw new BootLayoutError(`the DSDT names at most 256 virtio-mmio devices, not ${devices.length}`);
  const children = devices.map((d, i) => aml.device(virtioDeviceName(i), [
    aml.name('_HID', aml.string('LNRO0005')),
    aml.name('_UID', aml.integer(i)),
    aml.name('_CRS', aml.resourceTemplate([aml.memory32Fixed(d.base, d.size), aml.extendedInterrupt(d.gsi)])),
  ]));
  children.push(aml.device('COM1', [
    aml.name('_HID', aml.eisaId('PNP0501')),
    aml.name('_UID', aml.integer(0)),
    aml.name('_CRS', aml.resourceTemplate([aml.ioPort(COM1_PORT, 8), aml.irqNoFlags(COM1_IRQ)])),
  ]));
  children.push(aml.device('PWRB', [
    aml.name('_HID', aml.eisaId('PNP0C0C')),
    aml.name('_UID', aml.integer(0)),
  ]));
  // The generation ID: Linux's vmgenid driver matches the compatible ID and reads ADDR, a package
  // of the ID's address, low then high 32 bits (as QEMU and Firecracker describe it).
  children.push(aml.device('VGEN', [
    aml.name('_HID', aml.string('TSVMVGID')),
    aml.name('_CID', aml.string('VM_GEN_COUNTER')),
    aml.name('_DDN', aml.string('VM_GEN_COUNTER')),
    aml.name('ADDR', aml.pkg([aml.integer(VMGENID_ADDR), aml.integer(0)])),
  ]));
  // _EVT gets the interrupt that fired. Notify 0x80 on a power button: "the button was pressed"
  // (ACPI 6.x, 4.8.3.1); on VGEN: "the ID changed" (the value QEMU uses; the driver takes any).
  children.push(aml.device('GED0', [
    aml.name('_HID', aml.string('ACPI0013')),
    aml.name('_UID', aml.integer(0)),
    aml.name('_CRS', aml.resourceTemplate([aml.extendedInterrupt(VMGENID_GSI), aml.extendedInterrupt(POWER_BUTTON_GSI)])),
    aml.method('_EVT', 1, [
      aml.ifArg0Equals(VMGENID_GSI, [aml.notify('\\_SB_.VGEN', 0x80)]),
      aml.ifArg0Equals(POWER_BUTTON_GSI, [aml.notify('\\_SB_.PWRB', 0x80)]),
    ]),
  ]));
  // \_S5_: the SLP_TYP values for soft-off, which Linux writes to the sleep control register.
  const s5 = aml.name('\\_S5_', aml.pkg([aml.integer(ACPI_S5_SLEEP_TYPE), aml.integer(0)]));
  return sdt('DSDT', 2, 'TSVMDSDT', aml.concat([s5, aml.scope('\\_SB_', children)]));
}

export interface AcpiLayout {
  readonly rsdp: number;
  readonly xsdt: number;
  readonly fadt: number;
  readonly madt: number;
  readonly dsdt: number;
  readonly end: number;
}

const align16 = (n: number): number => (n + 15) & ~15;

/** Builds every table and writes them from RSDP_ADDR on; returns where each landed. */
export function writeAcpiTables(memory: GuestMemory, vcpus: number, devices: readonly VirtioMmioDevice[]): AcpiLayout {
  const dsdt = buildDsdt(devices);
  const madt = buildMadt(vcpus);
  const xsdtAddr = align16(RSDP_ADDR + RSDP_SIZE);
  const xsdtSize = ACPI_HEADER_SIZE + 2 * 8;
  const fadtAddr = align16(xsdtAddr + xsdtSize);
  const madtAddr = align16(fadtAddr + FADT_SIZE);
  const dsdtAddr = align16(madtAddr + madt.length);
  const end = dsdtAddr + dsdt.length;
  if (end > RSDP_ADDR + ACPI_AREA_SIZE) throw new BootLayoutError(`ACPI tables need ${end - RSDP_ADDR} bytes; ${ACPI_AREA_SIZE} are set aside`);
  memory.write(RSDP_ADDR, buildRsdp(xsdtAddr));
  memory.write(xsdtAddr, buildXsdt([fadtAddr, madtAddr]));
  memory.write(fadtAddr, buildFadt(dsdtAddr));
  memory.write(madtAddr, madt);
  memory.write(dsdtAddr, dsdt);
  return { rsdp: RSDP_ADDR, xsdt: xsdtAddr, fadt: fadtAddr, madt: madtAddr, dsdt: dsdtAddr, end };
}
