import type { GuestMemory } from '../../memory/guest-memory.js';
import { DeviceStateError, VirtqueueError } from '../errors.js';
import { DescriptorChain, VIRTQ_DESC_SIZE } from './chain.js';

/** Driver → device: "do not interrupt me" (ignored when EVENT_IDX is negotiated). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** Largest queue the split ring format allows. */
export const VIRTQ_MAX_SIZE = 32768;

/** Plain, JSON-safe queue state (after rust-vmm virtio-queue's state.rs). */
export interface QueueState {
  maxSize: number;
  size: number;
  ready: boolean;
  descTable: number;
  availRing: number;
  usedRing: number;
  nextAvail: number;
  nextUsed: number;
  /** used.idx at the last interrupt, for EVENT_IDX suppression; null until the first one. */
  signalledUsed: number | null;
  eventIdx: boolean;
  indirect: boolean;
}

const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;
const isU16 = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffff;
const isAddress = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/**
 * A split virtqueue (virtio 1.x §2.7) over guest memory. The transport fills in size and ring
 * addresses while the driver configures it; `validate()` checks them before the queue is used;
 * the device then pops available chains and adds used elements. Every index read from the guest
 * is checked: an avail index that runs more than `size` ahead of what the device consumed is a
 * broken (or hostile) driver and throws VirtqueueError instead of making the device loop.
 */
export class Virtqueue {
  size: number;
  ready = false;
  descTable = 0;
  availRing = 0;
  usedRing = 0;
  nextAvail = 0;
  nextUsed = 0;
  signalledUsed: number | null = null;
  /** VIRTIO_F_EVENT_IDX negotiated: used_event / avail_event govern notifications. */
  eventIdx = false;
  /** VIRTIO_F_INDIRECT_DESC negotiated. */
  indirect = false;

  constructor(private readonly memory: GuestMemory, readonly maxSize: number) {
    if (!isPowerOfTwo(maxSize) || maxSize > VIRTQ_MAX_SIZE) throw new RangeError(`queue max size ${maxSize} is not a power of two <= ${VIRTQ_MAX_SIZE}`);
    this.size = maxSize;
  }

  /** Back to the state after device reset. */
  reset(): void {
    this.size = this.maxSize;
    this.ready = false;
    this.descTable = this.availRing = this.usedRing = 0;
    this.nextAvail = this.nextUsed = 0;
    this.signalledUsed = null;
    this.eventIdx = this.indirect = false;
  }

  /** Throws VirtqueueError unless size and the three areas are usable (§2.7 alignment rules). */
  validate(): void {
    const n = this.size;
    if (!isPowerOfTwo(n) || n > this.maxSize) throw new VirtqueueError(`queue size ${n} is not a power of two in [1, ${this.maxSize}]`);
    this.checkArea('descriptor table', this.descTable, 16, VIRTQ_DESC_SIZE * n);
    this.checkArea('available ring', this.availRing, 2, 6 + 2 * n);
    this.checkArea('used ring', this.usedRing, 4, 6 + 8 * n);
  }

  private checkArea(what: string, addr: number, align: number, len: number): void {
    if (!isAddress(addr)) throw new VirtqueueError(`${what} address 0x${Number(addr).toString(16)} is beyond any guest RAM`);
    if (addr % align !== 0) throw new VirtqueueError(`${what} address 0x${addr.toString(16)} is not ${align}-byte aligned`);
    if (!this.memory.contains(addr, len)) throw new VirtqueueError(`${what} 0x${addr.toString(16)}+0x${len.toString(16)} is not inside guest RAM`);
  }

  private availIdx(): number {
    return this.memory.readU16(this.availRing + 2);
  }

  /** How many chains the driver made available that the device has not popped yet. */
  pending(): number {
    const ahead = (this.availIdx() - this.nextAvail) & 0xffff;
    if (ahead > this.size) {
      throw new VirtqueueError(`avail index ran ${ahead} entries ahead of the device on a queue of ${this.size}`, { availIdx: this.availIdx(), nextAvail: this.nextAvail });
    }
    return ahead;
  }

  /** The next available chain, or null. Throws VirtqueueError on a bad avail index or head. */
  popChain(): DescriptorChain | null {
    if (this.pending() === 0) return null;
    const slot = this.nextAvail % this.size;
    const head = this.memory.readU16(this.availRing + 4 + 2 * slot);
    if (head >= this.size) throw new VirtqueueError(`available ring entry ${slot} names descriptor ${head}, outside the queue of ${this.size}`);
    this.nextAvail = (this.nextAvail + 1) & 0xffff;
    return new DescriptorChain(this.memory, this.descTable, this.size, head, this.indirect);
  }

  /**
   * Gives back the last `count` popped chains, unused, so that the next pops return them again
   * (rust-vmm's go_to_previous_position): for a device that needs several chains at once and
   * found too few.
   */
  undoPop(count: number): void {
    this.nextAvail = (this.nextAvail - count) & 0xffff;
  }

  /** Returns a chain to the driver with `len` bytes written into its device-writable buffers. */
  addUsed(head: number, len: number): void {
    const slot = this.nextUsed % this.size;
    const at = this.usedRing + 4 + 8 * slot;
    this.memory.writeU32(at, head);
    this.memory.writeU32(at + 4, len);
    this.nextUsed = (this.nextUsed + 1) & 0xffff;
    // The element must be visible before the index that publishes it (x86 keeps store order).
    this.memory.writeU16(this.usedRing + 2, this.nextUsed);
  }

  /**
   * Re-enables driver notifications before the device goes idle and reports whether chains
   * arrived meanwhile (the caller then keeps popping). With EVENT_IDX this publishes avail_event
   * = next avail index, i.e. "kick me for the very next buffer".
   */
  enableNotification(): boolean {
    if (this.eventIdx) this.memory.writeU16(this.usedRing + 4 + 8 * this.size, this.nextAvail);
    return this.pending() > 0;
  }

  /**
   * Whether the driver wants an interrupt for the used elements added since the last one
   * (§2.7.7.2 / §2.7.10): with EVENT_IDX, only when used.idx passed used_event; otherwise unless
   * the driver set VIRTQ_AVAIL_F_NO_INTERRUPT.
   */
  needsNotification(): boolean {
    if (!this.eventIdx) return (this.memory.readU16(this.availRing) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    const usedEvent = this.memory.readU16(this.availRing + 4 + 2 * this.size);
    const now = this.nextUsed;
    const old = this.signalledUsed;
    this.signalledUsed = now;
    if (old === null) return true;
    // vring_need_event: did used.idx move past used_event in the window (old, now]?
    return ((now - usedEvent - 1) & 0xffff) < ((now - old) & 0xffff);
  }

  state(): QueueState {
    return {
      maxSize: this.maxSize, size: this.size, ready: this.ready,
      descTable: this.descTable, availRing: this.availRing, usedRing: this.usedRing,
      nextAvail: this.nextAvail, nextUsed: this.nextUsed, signalledUsed: this.signalledUsed,
      eventIdx: this.eventIdx, indirect: this.indirect,
    };
  }

  /** Rebuilds a queue from saved state, re-validating it against `memory` when it is ready. */
  static fromState(memory: GuestMemory, s: QueueState, device = 'virtqueue'): Virtqueue {
    const bad = (m: string): never => { throw new DeviceStateError(device, m); };
    if (typeof s !== 'object' || s === null) bad('queue state is not an object');
    if (typeof s.maxSize !== 'number' || !isPowerOfTwo(s.maxSize) || s.maxSize > VIRTQ_MAX_SIZE) bad(`queue maxSize ${String(s.maxSize)} is not a power of two <= ${VIRTQ_MAX_SIZE}`);
    // A queue that is not ready holds whatever 32/64-bit values the driver wrote so far; the
    // checks that matter run in validate() below and again when the driver sets QueueReady.
    if (typeof s.size !== 'number' || !Number.isInteger(s.size) || s.size < 0 || s.size > 0xffff_ffff) bad(`queue size ${String(s.size)} is not a 32-bit value`);
    for (const k of ['descTable', 'availRing', 'usedRing'] as const) {
      const v = s[k];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= 2 ** 64) bad(`${k} ${String(v)} is not a 64-bit address`);
    }
    if (!isU16(s.nextAvail) || !isU16(s.nextUsed)) bad('nextAvail/nextUsed must be 16-bit indices');
    if (s.signalledUsed !== null && !isU16(s.signalledUsed)) bad('signalledUsed must be null or a 16-bit index');
    for (const k of ['ready', 'eventIdx', 'indirect'] as const) if (typeof s[k] !== 'boolean') bad(`${k} must be a boolean`);
    const q = new Virtqueue(memory, s.maxSize);
    q.size = s.size;
    q.ready = s.ready;
    q.descTable = s.descTable;
    q.availRing = s.availRing;
    q.usedRing = s.usedRing;
    q.nextAvail = s.nextAvail;
    q.nextUsed = s.nextUsed;
    q.signalledUsed = s.signalledUsed;
    q.eventIdx = s.eventIdx;
    q.indirect = s.indirect;
    if (q.ready) {
      try {
        q.validate();
      } catch (e) {
        bad(e instanceof Error ? e.message : String(e));
      }
    }
    return q;
  }
}
