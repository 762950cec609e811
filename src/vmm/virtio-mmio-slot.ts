/**
 * A virtio device on the MMIO bus: its window and interrupt line (slot N of the virtio-mmio
 * area, as the DSDT and the command line describe it), its transport, and one ioeventfd per
 * queue, so a queue notification never makes the vCPU leave the kernel; the shared poller turns
 * them into queueNotify calls on the main thread.
 */
import type { VmFd } from '../kvm/vm.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { VIRTIO_FIRST_IRQ, VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE } from '../memory/layout.js';
import { EventFd } from '../sys/eventfd.js';
import { sharedPoller } from '../sys/poller.js';
import type { Bus, InterruptLine, MmioDevice } from '../devices/bus.js';
import type { VirtioDevice } from '../devices/virtio/device.js';
import { MMIO_QUEUE_NOTIFY, VirtioMmioTransport, type VirtioMmioState } from '../devices/virtio/mmio.js';

export interface VirtioSlot {
  base: number;
  size: number;
  gsi: number;
}

/** The window and GSI of virtio-mmio slot `index`. */
export function virtioSlot(index: number): VirtioSlot {
  return { base: VIRTIO_MMIO_BASE + index * VIRTIO_MMIO_SIZE, size: VIRTIO_MMIO_SIZE, gsi: VIRTIO_FIRST_IRQ + index };
}

export interface VirtioMmioSlotArgs {
  /** The bus entry's name, e.g. `virtio-blk:_disk0`. */
  name: string;
  index: number;
  device: VirtioDevice;
  vmFd: VmFd;
  memory: GuestMemory;
  mmio: Bus<MmioDevice>;
  lineFor(gsi: number): InterruptLine;
  onDeviceError(reason: string): void;
  /** The transport's saved state (a restore); the device inside it is restored by the caller. */
  saved?: VirtioMmioState;
}

export class VirtioMmioSlot {
  private closed = false;

  private constructor(
    readonly slot: VirtioSlot,
    readonly transport: VirtioMmioTransport,
    private readonly vmFd: VmFd,
    private readonly notifiers: readonly EventFd[],
  ) {}

  static attach(a: VirtioMmioSlotArgs): VirtioMmioSlot {
    const slot = virtioSlot(a.index);
    const args = { device: a.device, memory: a.memory, interrupt: a.lineFor(slot.gsi), onDeviceError: a.onDeviceError };
    const transport = a.saved !== undefined ? VirtioMmioTransport.fromState(args, a.saved) : new VirtioMmioTransport(args);
    a.mmio.insert(a.name, slot.base, slot.size, transport);
    const notifiers: EventFd[] = [];
    const attached = new VirtioMmioSlot(slot, transport, a.vmFd, notifiers);
    a.device.queueMaxSizes.forEach((_, queue) => {
      const fd = EventFd.create({ nonBlocking: true });
      a.vmFd.ioeventfd(fd, slot.base + MMIO_QUEUE_NOTIFY, 4, { datamatch: BigInt(queue) });
      notifiers.push(fd);
      sharedPoller().add(fd.fd, () => {
        if (fd.read() > 0n && !attached.closed) transport.queueNotify(queue);
      });
    });
    return attached;
  }

  /** Stops the notifications (the transport stays on the bus until the VM goes). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.notifiers.forEach((fd, queue) => {
      try {
        this.vmFd.ioeventfdDeassign(fd, this.slot.base + MMIO_QUEUE_NOTIFY, 4, { datamatch: BigInt(queue) });
      } catch { /* the VM may already be gone; closing the eventfd is what matters */ }
      sharedPoller().remove(fd.fd);
      fd.close();
    });
  }
}
