/**
 * Waits for many file descriptors at once without blocking the event loop: one poll(2) call over
 * every watched fd runs on a libuv pool thread (koffi's async call), plus a private eventfd that
 * interrupts it when the set changes. One pool thread serves every disk's queue-notify eventfd,
 * instead of one parked read per disk (libuv's pool has only four threads, and a tsvmm started as
 * an ES module cannot enlarge it: the pool is already running when the first module executes).
 */
import { libc, koffi } from './libc-handle.js';
import { SysError } from './errno.js';
import { EventFd } from './eventfd.js';

const POLLIN = 0x001;
const POLLFD_BYTES = 8; // struct pollfd { int fd; short events; short revents; }

const pollFn = libc.func('int poll(void *fds, unsigned long nfds, int timeout)');

function pollAsync(fds: Uint8Array, count: number): Promise<number> {
  return new Promise((resolve, reject) => {
    pollFn.async(fds, count, -1, (err: unknown, ret: number) => {
      if (err) { reject(err instanceof Error ? err : new Error(String(err))); return; }
      if (ret < 0) { reject(new SysError('poll', koffi.errno())); return; }
      resolve(ret);
    });
  });
}

export class FdPoller {
  private readonly watched = new Map<number, () => void>();
  private readonly wake = EventFd.create({ nonBlocking: true });
  private looping = false;
  private closed = false;

  /** Calls `onReadable` (on the main thread) each time `fd` polls readable; it must drain it. */
  add(fd: number, onReadable: () => void): void {
    if (this.closed) throw new TypeError('FdPoller is closed');
    this.watched.set(fd, onReadable);
    this.interrupt();
    if (!this.looping) void this.loop();
  }

  /** Stops watching `fd`; the caller may close it once this returns. */
  remove(fd: number): void {
    this.watched.delete(fd);
    this.interrupt();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watched.clear();
    if (this.looping) this.interrupt();
    else this.wake.close();
  }

  private interrupt(): void {
    if (this.looping) this.wake.write(1n);
  }

  private async loop(): Promise<void> {
    this.looping = true;
    try {
      while (!this.closed && this.watched.size > 0) {
        const fds = [this.wake.fd, ...this.watched.keys()];
        const buf = new Uint8Array(fds.length * POLLFD_BYTES);
        const view = new DataView(buf.buffer);
        fds.forEach((fd, i) => {
          view.setInt32(i * POLLFD_BYTES, fd, true);
          view.setInt16(i * POLLFD_BYTES + 4, POLLIN, true);
        });
        await pollAsync(buf, fds.length);
        fds.forEach((fd, i) => {
          if ((view.getInt16(i * POLLFD_BYTES + 6, true) & POLLIN) === 0) return;
          if (i === 0) { this.wake.read(); return; }
          // Removed while the poll was running: its owner may already have closed it.
          this.watched.get(fd)?.();
        });
      }
    } finally {
      this.looping = false;
      if (this.closed) this.wake.close();
    }
  }
}

/** The process-wide poller (one pool thread for all watched fds). */
let shared: FdPoller | undefined;
export function sharedPoller(): FdPoller {
  shared ??= new FdPoller();
  return shared;
}
