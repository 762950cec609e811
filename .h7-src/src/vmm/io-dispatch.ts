import type { Bus, MmioDevice, PioDevice } from '../devices/bus.js';
import { AccessKind } from './vcpu-protocol.js';

/** Ports that firmware-less guests probe and that need no device: reads float high, writes vanish. */
export interface UnclaimedCounter {
  unclaimed: number;
}

/**
 * Routes one vCPU access to the device that claims its address. String port I/O (`rep ins/outs`)
 * arrives as `count` elements of `size` bytes and is replayed element by element, as hardware
 * would see it. Unclaimed reads return all ones, like an empty ISA/PCI bus.
 */
export function makeAccessHandler(pio: Bus<PioDevice>, mmio: Bus<MmioDevice>, stats: UnclaimedCounter) {
  return (kind: AccessKind, address: number, size: number, count: number, data: Uint8Array): void => {
    switch (kind) {
      case AccessKind.PioIn:
      case AccessKind.PioOut: {
        const hit = pio.resolve(address);
        for (let i = 0; i < count; i++) {
          const el = data.subarray(i * size, (i + 1) * size);
          if (hit === undefined) {
            stats.unclaimed++;
            if (kind === AccessKind.PioIn) el.fill(0xff);
          } else if (kind === AccessKind.PioIn) {
            hit.device.pioRead(hit.offset, el);
          } else {
            hit.device.pioWrite(hit.offset, el);
          }
        }
        return;
      }
      case AccessKind.MmioRead:
      case AccessKind.MmioWrite: {
        const el = data.subarray(0, size);
        const hit = mmio.resolve(address);
        if (hit === undefined) {
          stats.unclaimed++;
          if (kind === AccessKind.MmioRead) el.fill(0xff);
        } else if (kind === AccessKind.MmioRead) {
          hit.device.mmioRead(hit.offset, el);
        } else {
          hit.device.mmioWrite(hit.offset, el);
        }
        return;
      }
    }
  };
}
