import type { GuestMemory } from '../../../src/memory/guest-memory.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../../src/devices/virtio/chain.js';
import {
  MMIO_DRIVER_FEATURES, MMIO_DRIVER_FEATURES_SEL, MMIO_QUEUE_DESC_HIGH, MMIO_QUEUE_DESC_LOW,
  MMIO_QUEUE_DEVICE_HIGH, MMIO_QUEUE_DEVICE_LOW, MMIO_QUEUE_DRIVER_HIGH, MMIO_QUEUE_DRIVER_LOW,
  MMIO_QUEUE_NUM, MMIO_QUEUE_READY, MMIO_QUEUE_SEL, MMIO_STATUS, MMIO_DEVICE_FEATURES,
  MMIO_DEVICE_FEATURES_SEL, MMIO_QUEUE_NOTIFY, MMIO_INTERRUPT_ACK, MMIO_INTERRUPT_STATUS,
} from '../../../src/devices/virtio/mmio.js';
import type { MmioDevice } from '../../../src/devices/bus.js';
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK } from '../../../src/devices/virtio/device.js';

/** One buffer the test driver places in a chain. */
export interface Buf { addr: number; len: number; writable: boolean }

/**
 * A test-side virtio driver for one split queue laid out in guest memory (after rust-vmm
 * virtio-queue's mock.rs): writes descriptors, publishes chains, reads the used ring.
 */
export class MockQueue {
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  private nextDesc = 0;
  availIdx = 0;

  constructor(readonly mem: GuestMemory, base: number, readonly size: number) {
    this.desc = base;
    this.avail = base + 16 * size;
    this.used = Math.ceil((this.avail + 6 + 2 * size) / 4096) * 4096;
  }

  /** End of the area the queue uses. */
  get end(): number {
    return this.used + 6 + 8 * this.size;
  }

  writeDesc(index: number, addr: number, len: number, flags: number, next: number, table = this.desc): void {
    const at = table + 16 * index;
    this.mem.writeU64(at, BigInt(addr));
    this.mem.writeU32(at + 8, len);
    this.mem.writeU16(at + 12, flags);
    this.mem.writeU16(at + 14, next);
  }

  /** Writes `bufs` as a chain into free descriptor slots and returns the head index. */
  buildChain(bufs: Buf[]): number {
    const head = this.nextDesc % this.size;
    bufs.forEach((b, i) => {
      const idx = (this.nextDesc + i) % this.size;
      const last = i === bufs.length - 1;
      this.writeDesc(idx, b.addr, b.len, (b.writable ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), last ? 0 : (idx + 1) % this.size);
    });
    this.nextDesc += bufs.length;
    return head;
  }

  /** Builds an indirect table at `table` and a single main descriptor pointing at it. */
  buildIndirect(bufs: Buf[], table: number): number {
    bufs.forEach((b, i) => {
      const last = i === bufs.length - 1;
      this.writeDesc(i, b.addr, b.len, (b.writable ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), last ? 0 : i + 1, table);
    });
    const head = this.nextDesc % this.size;
    this.writeDesc(head, table, 16 * bufs.length, VIRTQ_DESC_F_INDIRECT, 0);
    this.nextDesc += 1;
    return head;
  }

  publish(head: number): void {
    this.mem.writeU16(this.avail + 4 + 2 * (this.availIdx % this.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.mem.writeU16(this.avail + 2, this.availIdx);
  }

  addChain(bufs: Buf[]): number {
    const head = this.buildChain(bufs);
    this.publish(head);
    return head;
  }

  setAvailIdx(v: number): void {
    this.availIdx = v & 0xffff;
    this.mem.writeU16(this.avail + 2, this.availIdx);
  }

  setAvailFlags(flags: number): void {
    this.mem.writeU16(this.avail, flags);
  }

  setUsedEvent(v: number): void {
    this.mem.writeU16(this.avail + 4 + 2 * this.size, v);
  }

  availEvent(): number {
    return this.mem.readU16(this.used + 4 + 8 * this.size);
  }

  usedIdx(): number {
    return this.mem.readU16(this.used + 2);
  }

  usedElem(i: number): { id: number; len: number } {
    const at = this.used + 4 + 8 * (i % this.size);
    return { id: this.mem.readU32(at), len: this.mem.readU32(at + 4) };
  }
}

function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}

export function mmioRead32(dev: MmioDevice, offset: number): number {
  const b = new Uint8Array(4);
  dev.mmioRead(offset, b);
  return new DataView(b.buffer).getUint32(0, true);
}

export function mmioWrite32(dev: MmioDevice, offset: number, v: number): void {
  dev.mmioWrite(offset, u32(v));
}

export function readDeviceFeatures(dev: MmioDevice): bigint {
  mmioWrite32(dev, MMIO_DEVICE_FEATURES_SEL, 0);
  const lo = mmioRead32(dev, MMIO_DEVICE_FEATURES);
  mmioWrite32(dev, MMIO_DEVICE_FEATURES_SEL, 1);
  const hi = mmioRead32(dev, MMIO_DEVICE_FEATURES);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

export function writeDriverFeatures(dev: MmioDevice, f: bigint): void {
  mmioWrite32(dev, MMIO_DRIVER_FEATURES_SEL, 0);
  mmioWrite32(dev, MMIO_DRIVER_FEATURES, Number(f & 0xffff_ffffn));
  mmioWrite32(dev, MMIO_DRIVER_FEATURES_SEL, 1);
  mmioWrite32(dev, MMIO_DRIVER_FEATURES, Number(f >> 32n));
}

export function setupQueue(dev: MmioDevice, index: number, q: { desc: number; avail: number; used: number; size: number }): void {
  mmioWrite32(dev, MMIO_QUEUE_SEL, index);
  mmioWrite32(dev, MMIO_QUEUE_NUM, q.size);
  mmioWrite32(dev, MMIO_QUEUE_DESC_LOW, q.desc % 2 ** 32);
  mmioWrite32(dev, MMIO_QUEUE_DESC_HIGH, Math.floor(q.desc / 2 ** 32));
  mmioWrite32(dev, MMIO_QUEUE_DRIVER_LOW, q.avail % 2 ** 32);
  mmioWrite32(dev, MMIO_QUEUE_DRIVER_HIGH, Math.floor(q.avail / 2 ** 32));
  mmioWrite32(dev, MMIO_QUEUE_DEVICE_LOW, q.used % 2 ** 32);
  mmioWrite32(dev, MMIO_QUEUE_DEVICE_HIGH, Math.floor(q.used / 2 ** 32));
  mmioWrite32(dev, MMIO_QUEUE_READY, 1);
}

/**
 * The Linux virtio_mmio probe order: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK (read
 * back), queues, DRIVER_OK. Returns the final status.
 */
export function bringUp(dev: MmioDevice, features: bigint, queues: Array<{ desc: number; avail: number; used: number; size: number }>): number {
  mmioWrite32(dev, MMIO_STATUS, 0);
  mmioWrite32(dev, MMIO_STATUS, STATUS_ACKNOWLEDGE);
  mmioWrite32(dev, MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
  writeDriverFeatures(dev, features);
  mmioWrite32(dev, MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
  if (!(mmioRead32(dev, MMIO_STATUS) & STATUS_FEATURES_OK)) return mmioRead32(dev, MMIO_STATUS);
  queues.forEach((q, i) => setupQueue(dev, i, q));
  mmioWrite32(dev, MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
  return mmioRead32(dev, MMIO_STATUS);
}

export function notify(dev: MmioDevice, queue: number): void {
  mmioWrite32(dev, MMIO_QUEUE_NOTIFY, queue);
}

/** Reads and acknowledges InterruptStatus, as a driver's interrupt handler does. */
export function ackInterrupt(dev: MmioDevice): number {
  const s = mmioRead32(dev, MMIO_INTERRUPT_STATUS);
  mmioWrite32(dev, MMIO_INTERRUPT_ACK, s);
  return s;
}

export class CountingLine {
  count = 0;
  trigger(): void {
    this.count++;
  }
}
