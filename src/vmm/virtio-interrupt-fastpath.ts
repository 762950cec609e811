/**
 * The vCPU thread's side of the shared virtio-mmio InterruptStatus registers
 * (devices/virtio/interrupt-status.ts): a Linux driver's interrupt handler reads InterruptStatus
 * and writes InterruptACK on every virtio interrupt, and answering both here saves two round
 * trips to the main thread per interrupt.
 */
import { MMIO_INTERRUPT_ACK, MMIO_INTERRUPT_STATUS } from '../devices/virtio/mmio.js';
import type { VirtioInterruptShare } from './vcpu-protocol.js';

export class VirtioInterruptFastPath {
  private readonly words: Int32Array;
  private readonly end: number;

  private constructor(private readonly share: VirtioInterruptShare) {
    this.words = new Int32Array(share.table);
    this.end = share.slots * share.slotSize;
  }

  /** The fast path over `share`, or undefined when no slot has a device. */
  static of(share: VirtioInterruptShare | undefined): VirtioInterruptFastPath | undefined {
    return share === undefined || share.slots === 0 ? undefined : new VirtioInterruptFastPath(share);
  }

  /**
   * Answers a 32-bit read of a slot's InterruptStatus (into `data`) or write of its InterruptACK
   * (from `data`); false for any other access, which the main thread's bus then answers.
   */
  answer(address: number, isWrite: boolean, data: Uint8Array): boolean {
    if (data.byteLength !== 4) return false;
    const rel = address - this.share.base;
    if (rel < 0 || rel >= this.end) return false;
    const slot = Math.floor(rel / this.share.slotSize);
    const offset = rel - slot * this.share.slotSize;
    const view = new DataView(data.buffer, data.byteOffset, 4);
    if (!isWrite && offset === MMIO_INTERRUPT_STATUS) {
      view.setUint32(0, Atomics.load(this.words, slot) >>> 0, true);
      return true;
    }
    if (isWrite && offset === MMIO_INTERRUPT_ACK) {
      Atomics.and(this.words, slot, ~view.getUint32(0, true));
      return true;
    }
    return false;
  }
}
