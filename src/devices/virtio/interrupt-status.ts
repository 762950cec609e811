/**
 * The InterruptStatus register of virtio-mmio transports, kept in shared memory. A Linux driver's
 * interrupt handler reads it and writes InterruptACK on every virtio interrupt: two MMIO exits,
 * each a round trip from the vCPU thread to the main thread if the main thread answered them.
 * With the registers here, vCPU threads answer both themselves (vmm/vcpu-worker.ts) and the main
 * thread only sets bits when it raises an interrupt. Every update is an atomic read-modify-write,
 * so a bit set while a vCPU acknowledges others is never lost.
 */

/** One transport's register. */
export class InterruptStatusCell {
  constructor(private readonly words: Int32Array, private readonly index: number) {}

  /** A register of its own (a transport no vCPU thread answers for: tests, tools). */
  static standalone(): InterruptStatusCell {
    return new InterruptStatusCell(new Int32Array(1), 0);
  }

  get(): number {
    return Atomics.load(this.words, this.index) >>> 0;
  }

  set(value: number): void {
    Atomics.store(this.words, this.index, value);
  }

  raise(bits: number): void {
    Atomics.or(this.words, this.index, bits);
  }

  acknowledge(bits: number): void {
    Atomics.and(this.words, this.index, ~bits);
  }
}

/** The registers of `slots` virtio-mmio slots, slot i at word i, shareable with vCPU threads. */
export class InterruptStatusTable {
  readonly buffer: SharedArrayBuffer;
  private readonly words: Int32Array;

  constructor(readonly slots: number) {
    this.buffer = new SharedArrayBuffer(4 * slots);
    this.words = new Int32Array(this.buffer);
  }

  cell(slot: number): InterruptStatusCell {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.slots) throw new RangeError(`virtio-mmio slot ${slot} is outside the ${this.slots} slots`);
    return new InterruptStatusCell(this.words, slot);
  }
}
