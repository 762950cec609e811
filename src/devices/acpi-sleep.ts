import type { PioDevice } from './bus.js';

/** Sleep control register bits (ACPI 6.5, 4.8.3.7): SLP_TYP in bits 2-4, SLP_EN in bit 5. */
const SLP_TYP_SHIFT = 2;
const SLP_TYP_MASK = 0x7;
const SLP_EN = 0x20;

/**
 * The hardware-reduced ACPI sleep control (offset 0) and status (offset 1) registers. A guest
 * powers off by writing SLP_EN with the soft-off SLP_TYP that the DSDT's \_S5_ names; other
 * sleep states are not supported and are ignored (the guest then finds itself still running).
 * The status register reads 0x80 (WAK_STS) so a guest polling for wake-up does not hang.
 */
export class AcpiSleepControl implements PioDevice {
  constructor(private readonly softOffType: number, private readonly onPowerOff: () => void) {}

  pioRead(offset: number, data: Uint8Array): void {
    data.fill(0);
    if (offset === 1 && data.length > 0) data[0] = 0x80;
  }

  pioWrite(offset: number, data: Uint8Array): void {
    if (offset !== 0 || data.length === 0) return;
    const v = data[0]!;
    if ((v & SLP_EN) !== 0 && ((v >> SLP_TYP_SHIFT) & SLP_TYP_MASK) === this.softOffType) this.onPowerOff();
  }
}

/**
 * The ACPI reset register (FADT RESET_REG): a guest that writes the FADT's RESET_VALUE resets the
 * VM, as Cloud Hypervisor's does; other values are ignored. Reads return 0.
 */
export class AcpiResetRegister implements PioDevice {
  constructor(private readonly resetValue: number, private readonly onReset: () => void) {}

  pioRead(_offset: number, data: Uint8Array): void {
    data.fill(0);
  }

  pioWrite(offset: number, data: Uint8Array): void {
    if (offset === 0 && data.length > 0 && data[0] === this.resetValue) this.onReset();
  }
}
