/**
 * The x86-64 guest-physical address map, in one place so the builder, the boot tables, the
 * devices and the snapshot format agree. RAM sits below the 32-bit MMIO hole and, past ~3 GiB,
 * continues above 4 GiB: the `memory-region-0` / `memory-region-1` layout of the snapshot format.
 */
export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** Start of the 32-bit hole: RAM region 0 never goes past this. */
export const MMIO_HOLE_START = 3 * GiB;
/** RAM that does not fit below the hole resumes here. */
export const HIGH_RAM_START = 4 * GiB;

/** virtio-mmio windows, one page each, inside the hole. */
export const VIRTIO_MMIO_BASE = 0xd000_0000;
export const VIRTIO_MMIO_SIZE = 0x1000;
/** First GSI handed to virtio-mmio devices (4 is COM1; ISA lines below 5 are taken). */
export const VIRTIO_FIRST_IRQ = 5;
/**
 * The interrupts of the ACPI generic event device (GED): the power button on the last IOAPIC pin,
 * the VM generation ID's change notification on the one before, so virtio-mmio devices have GSIs
 * 5..21.
 */
export const POWER_BUTTON_GSI = 23;
export const VMGENID_GSI = 22;
/** The last GSI a virtio-mmio device may have. */
export const VIRTIO_LAST_IRQ = 21;

export const IOAPIC_BASE = 0xfec0_0000;

/**
 * ACPI sleep control and status registers (hardware-reduced ACPI, FADT SLEEP_CONTROL_REG /
 * SLEEP_STATUS_REG): a guest entering S5 through them powers the VM off.
 */
export const ACPI_SLEEP_CONTROL_PORT = 0x3c0;
export const ACPI_SLEEP_STATUS_PORT = 0x3c1;
/**
 * ACPI reset register (FADT RESET_REG, system I/O): writing ACPI_RESET_VALUE resets the VM. Linux
 * uses it with `reboot=acpi`; by default, on a hardware-reduced platform without EFI, it reboots
 * through the real-mode reset vector instead (vmm/boot/reset-vector.ts).
 */
export const ACPI_RESET_PORT = 0x3c2;
export const ACPI_RESET_VALUE = 1;
/** The SLP_TYP value the DSDT's \_S5_ package gives for soft-off. */
export const ACPI_S5_SLEEP_TYPE = 5;
export const LAPIC_BASE = 0xfee0_0000;

export interface RamRange {
  readonly index: number;
  readonly guestBase: number;
  readonly size: number;
}

/** Splits `ramBytes` of RAM around the 32-bit hole. */
export function ramLayout(ramBytes: number): RamRange[] {
  if (ramBytes <= MMIO_HOLE_START) return [{ index: 0, guestBase: 0, size: ramBytes }];
  return [
    { index: 0, guestBase: 0, size: MMIO_HOLE_START },
    { index: 1, guestBase: HIGH_RAM_START, size: ramBytes - MMIO_HOLE_START },
  ];
}
