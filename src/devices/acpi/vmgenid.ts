/**
 * VMGenID, the virtual machine generation ID (Microsoft's "Virtual Machine Generation ID" spec,
 * as QEMU and Firecracker offer it): 16 bytes in guest memory that change whenever the VM may
 * have been duplicated, announced by an ACPI Notify. Linux's vmgenid driver (built into Debian's
 * kernel) mixes the new ID into its RNG as a "VM fork" event, so clones restored from one
 * snapshot stop drawing the same random numbers, and tells user space (uevent NEW_VMGENID=1).
 *
 * The ID lives at a fixed address in memory the guest has reserved (boot/acpi.ts names it in the
 * DSDT's VGEN device, ADDR); it is part of guest RAM and so of every snapshot. tsvmm writes a new
 * random ID at every restore, then raises the generic event device's interrupt, whose event
 * method notifies VGEN. The state holds only where the ID and the interrupt are, so a restore
 * refuses a snapshot whose guest was told of other places.
 */
import { randomFillSync } from 'node:crypto';
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { InterruptLine, Snapshottable } from '../bus.js';
import { DeviceStateError } from '../errors.js';

export const VMGENID_SIZE = 16;

export interface VmGenIdState {
  /** Guest-physical address of the 16-byte ID. */
  address: number;
  /** The interrupt whose event method notifies the VGEN device. */
  gsi: number;
}

export class VmGenId implements Snapshottable<VmGenIdState> {
  private constructor(
    private readonly memory: GuestMemory,
    private readonly line: InterruptLine & { readonly gsi: number },
    readonly address: number,
  ) {}

  /** A new VM: writes its first ID (the guest driver reads it at probe; no notification). */
  static create(memory: GuestMemory, line: InterruptLine & { readonly gsi: number }, address: number): VmGenId {
    const dev = new VmGenId(memory, line, address);
    dev.writeNewId();
    return dev;
  }

  /** A restored VM's device, checked against the interrupt this tsvmm raises; call `announceRestore` once the VM's irqchip is loaded. */
  static fromState(memory: GuestMemory, line: InterruptLine & { readonly gsi: number }, s: VmGenIdState): VmGenId {
    if (s.address !== (s.address >>> 0) || s.address % 8 !== 0) throw new DeviceStateError('vmgenid', `address ${String(s.address)} is not an 8-byte aligned 32-bit address`);
    if (s.gsi !== line.gsi) throw new DeviceStateError('vmgenid', `the snapshot's guest was told of interrupt ${String(s.gsi)}; this tsvmm raises ${line.gsi}`);
    try {
      memory.read(s.address, VMGENID_SIZE);
    } catch {
      throw new DeviceStateError('vmgenid', `address 0x${s.address.toString(16)} is not in guest RAM`);
    }
    return new VmGenId(memory, line, s.address);
  }

  /** The current ID, as the guest reads it. */
  id(): Uint8Array {
    return this.memory.read(this.address, VMGENID_SIZE);
  }

  /**
   * This VM is a copy of the one that was snapshotted: a new ID, then the notification (an edge
   * on the interrupt; the guest handles it once it runs).
   */
  announceRestore(): void {
    this.writeNewId();
    this.line.trigger();
  }

  state(): VmGenIdState {
    return { address: this.address, gsi: this.line.gsi };
  }

  private writeNewId(): void {
    this.memory.write(this.address, randomFillSync(new Uint8Array(VMGENID_SIZE)));
  }
}
