import { EAGAIN, SysError } from './errno.js';
import { close, eventfd, read, readAsync, write, EFD_NONBLOCK, EFD_SEMAPHORE } from './libc.js';

/**
 * An eventfd: the kernel's 64-bit counter used by KVM_IRQFD (we write, KVM injects an
 * interrupt) and KVM_IOEVENTFD (the guest writes a register, KVM bumps the counter, no exit).
 * `readAsync` waits on a libuv pool thread so the main thread never blocks.
 */
export class EventFd {
  private closing = false;
  private closed = false;
  private pending = 0;
  private readonly scratch = new Uint8Array(8);
  private readonly scratchView = new DataView(this.scratch.buffer);

  private constructor(readonly fd: number, readonly nonBlocking: boolean) {}

  static create(options: { initial?: number; nonBlocking?: boolean; semaphore?: boolean } = {}): EventFd {
    const flags = (options.nonBlocking ? EFD_NONBLOCK : 0) | (options.semaphore ? EFD_SEMAPHORE : 0);
    return new EventFd(eventfd(options.initial ?? 0, flags), options.nonBlocking ?? false);
  }

  /** Adds `n` (≥ 1) to the counter. */
  write(n: bigint | number = 1n): void {
    this.assertOpen();
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
    write(this.fd, b);
  }

  /**
   * Reads and resets the counter. Blocks while it is zero unless the eventfd is non-blocking, in
   * which case a zero counter reads as 0n.
   */
  read(): bigint {
    this.assertOpen();
    try {
      read(this.fd, this.scratch);
    } catch (e) {
      if (this.nonBlocking && e instanceof SysError && e.errno === EAGAIN) return 0n;
      throw e;
    }
    return this.scratchView.getBigUint64(0, true);
  }

  /**
   * Waits (off-thread) for the counter to become non-zero, then reads and resets it. Resolves
   * with null once `close()` has been called, so a wait loop ends cleanly. Needs a blocking
   * eventfd (a non-blocking one would return EAGAIN at once).
   */
  async readAsync(): Promise<bigint | null> {
    if (this.closing) return null;
    if (this.nonBlocking) throw new TypeError('readAsync needs a blocking eventfd (create it without nonBlocking)');
    const buf = new Uint8Array(8);
    this.pending++;
    try {
      await readAsync(this.fd, buf);
    } finally {
      this.pending--;
      if (this.closing) {
        // Each write wakes one blocked reader: keep waking until none is left, then close.
        if (this.pending === 0) this.finishClose();
        else this.wake();
      }
    }
    if (this.closing) return null;
    return new DataView(buf.buffer).getBigUint64(0, true);
  }

  /**
   * Closes the fd. A read blocked on a pool thread would never return once the fd is closed
   * (and the number could be reused under it), so pending reads are woken by a write first and
   * the fd is closed when the last of them has come back.
   */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    if (this.pending > 0) this.wake();
    else this.finishClose();
  }

  private wake(): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, 1n, true);
    write(this.fd, b);
  }

  private finishClose(): void {
    if (this.closed) return;
    this.closed = true;
    close(this.fd);
  }

  private assertOpen(): void {
    if (this.closing) throw new TypeError(`eventfd ${this.fd} is closed`);
  }
}
