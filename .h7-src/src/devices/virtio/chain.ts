import type { GuestMemory } from '../../memory/guest-memory.js';
import { VirtqueueError } from '../errors.js';

/** Split-virtqueue descriptor flags (virtio 1.x §2.7.5). */
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
export const VIRTQ_DESC_SIZE = 16;

/** One buffer of a chain, already checked to lie inside guest RAM. */
export interface Descriptor {
  readonly addr: number;
  readonly len: number;
  /** True for device-writable buffers (the device fills them), false for device-readable ones. */
  readonly writable: boolean;
}

/** Largest total a chain may describe: used.len is a 32-bit field. */
const MAX_CHAIN_BYTES = 0xffff_ffff;

/**
 * A descriptor chain starting at `head`, validated as it is walked (after rust-vmm virtio-queue's
 * chain.rs): every index must be < the table size, a time-to-live equal to the table size ends
 * loops, each buffer must lie inside one guest RAM region, the total length must fit in 32 bits,
 * and an INDIRECT descriptor (only when negotiated) must be the last of the main chain, point at a
 * table inside RAM whose length is a non-zero multiple of 16, and contain no further INDIRECT
 * descriptor. Any violation throws VirtqueueError.
 */
export class DescriptorChain implements Iterable<Descriptor> {
  constructor(
    private readonly memory: GuestMemory,
    private readonly descTable: number,
    private readonly queueSize: number,
    readonly head: number,
    private readonly indirectAllowed: boolean,
  ) {}

  /** Walks the whole chain; throws VirtqueueError on the first violation. */
  collect(): Descriptor[] {
    return [...this];
  }

  *[Symbol.iterator](): Iterator<Descriptor> {
    const mem = this.memory;
    let table = this.descTable;
    let tableSize = this.queueSize;
    let index = this.head;
    let ttl = tableSize;
    let indirect = false;
    let total = 0;
    for (;;) {
      if (index >= tableSize) {
        throw new VirtqueueError(`descriptor index ${index} is outside the ${indirect ? 'indirect table' : 'queue'} of ${tableSize} entries`, { head: this.head });
      }
      if (ttl === 0) {
        throw new VirtqueueError(`descriptor chain at head ${this.head} is longer than its table (${tableSize}): a loop`, { head: this.head });
      }
      ttl--;
      const at = table + index * VIRTQ_DESC_SIZE;
      const addr64 = mem.readU64(at);
      const len = mem.readU32(at + 8);
      const flags = mem.readU16(at + 12);
      const next = mem.readU16(at + 14);

      if (flags & VIRTQ_DESC_F_INDIRECT) {
        if (!this.indirectAllowed) throw new VirtqueueError('INDIRECT descriptor used but VIRTIO_F_INDIRECT_DESC was not negotiated', { head: this.head });
        if (indirect) throw new VirtqueueError('INDIRECT descriptor inside an indirect table (nesting is forbidden)', { head: this.head });
        if (flags & VIRTQ_DESC_F_NEXT) throw new VirtqueueError('INDIRECT descriptor also has NEXT set', { head: this.head });
        if (len === 0 || len % VIRTQ_DESC_SIZE !== 0) throw new VirtqueueError(`indirect table length ${len} is not a non-zero multiple of 16`, { head: this.head });
        const tableAddr = this.checkedBuffer(addr64, len, 'indirect table');
        table = tableAddr;
        tableSize = len / VIRTQ_DESC_SIZE;
        index = 0;
        ttl = tableSize;
        indirect = true;
        continue;
      }

      const addr = this.checkedBuffer(addr64, len, 'buffer');
      total += len;
      if (total > MAX_CHAIN_BYTES) throw new VirtqueueError(`descriptor chain at head ${this.head} describes more than 4 GiB`, { head: this.head });
      yield { addr, len, writable: (flags & VIRTQ_DESC_F_WRITE) !== 0 };
      if (!(flags & VIRTQ_DESC_F_NEXT)) return;
      index = next;
    }
  }

  private checkedBuffer(addr64: bigint, len: number, what: string): number {
    if (addr64 > BigInt(Number.MAX_SAFE_INTEGER) || !this.memory.contains(Number(addr64), len)) {
      throw new VirtqueueError(`${what} 0x${addr64.toString(16)}+0x${len.toString(16)} of chain ${this.head} is not inside guest RAM`, { head: this.head });
    }
    return Number(addr64);
  }
}
