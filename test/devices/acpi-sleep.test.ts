import { describe, expect, test } from 'vitest';
import { AcpiResetRegister, AcpiSleepControl } from '../../src/devices/acpi-sleep.js';

describe('ACPI sleep control register', () => {
  test('SLP_EN with the soft-off type powers off; other writes do not', () => {
    let offs = 0;
    const dev = new AcpiSleepControl(5, () => { offs++; });
    dev.pioWrite(0, Uint8Array.of(5 << 2)); // type without SLP_EN
    dev.pioWrite(0, Uint8Array.of((3 << 2) | 0x20)); // S3: not supported
    dev.pioWrite(1, Uint8Array.of((5 << 2) | 0x20)); // the status register
    expect(offs).toBe(0);
    dev.pioWrite(0, Uint8Array.of((5 << 2) | 0x20)); // what Linux's acpi_hw_extended_sleep writes for S5
    expect(offs).toBe(1);
  });

  test('the status register reports WAK_STS', () => {
    const dev = new AcpiSleepControl(5, () => {});
    const d = new Uint8Array(1);
    dev.pioRead(1, d);
    expect(d[0]).toBe(0x80);
  });
});

describe('ACPI reset register', () => {
  test('the FADT reset value resets; other values and offsets do not', () => {
    let resets = 0;
    const dev = new AcpiResetRegister(1, () => { resets++; });
    dev.pioWrite(0, Uint8Array.of(0));
    dev.pioWrite(0, Uint8Array.of(6));
    dev.pioWrite(1, Uint8Array.of(1));
    expect(resets).toBe(0);
    dev.pioWrite(0, Uint8Array.of(1)); // what Linux's acpi_reboot writes
    expect(resets).toBe(1);
  });
});
