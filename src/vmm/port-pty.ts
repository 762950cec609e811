/**
 * `--serial pty` and `--console pty` as Cloud Hypervisor has them: the port's host end is a new
 * pseudo-terminal, whose path (`/dev/pts/N`) tsvmm logs and vm.info reports in the port's
 * `file`; a user attaches with `screen /dev/pts/N`. What the guest writes while nobody is
 * attached waits in the terminal's buffer; when that is full, further output is dropped (a
 * serial line nobody reads), never buffered without bound in the VMM.
 */
import { sharedPoller } from '../sys/poller.js';
import { openPty, type Pty } from '../sys/pty.js';
import { close, read, write } from '../sys/libc.js';
import { EAGAIN, SysError } from '../sys/errno.js';
import { log } from '../util/log.js';

const READ_CHUNK = 4096;

export class PortPty {
  private dropping = false;
  private closed = false;

  private constructor(private readonly pty: Pty, private readonly what: string, private readonly input: (bytes: Uint8Array) => void) {}

  /** Opens a pseudo-terminal for the port `what` names ("serial port", "virtio console"). */
  static open(what: string, input: (bytes: Uint8Array) => void): PortPty {
    const port = new PortPty(openPty(), what, input);
    sharedPoller().add(port.pty.master, () => port.drain());
    log.warn(`${what}: pty ${port.pty.path}`);
    return port;
  }

  /** The terminal users open (`/dev/pts/N`). */
  get path(): string {
    return this.pty.path;
  }

  /** Guest output into the terminal; dropped when its buffer is full. */
  output(bytes: Uint8Array): void {
    if (this.closed) return;
    let rest = bytes;
    while (rest.length > 0) {
      let n: number;
      try {
        n = write(this.pty.master, rest);
      } catch (e) {
        if (e instanceof SysError && e.errno === EAGAIN) {
          if (!this.dropping) log.warn(`${this.what} pty ${this.pty.path}: nobody reads it; dropping guest output until someone does`);
          this.dropping = true;
          return;
        }
        throw e;
      }
      rest = rest.subarray(n);
    }
    this.dropping = false;
  }

  /** Reads what the user typed (the poller calls this when the master is readable). */
  private drain(): void {
    const buf = new Uint8Array(READ_CHUNK);
    for (;;) {
      let n: number;
      try {
        n = read(this.pty.master, buf);
      } catch (e) {
        if (e instanceof SysError && e.errno === EAGAIN) return;
        log.warn(`${this.what} pty ${this.pty.path}: ${(e as Error).message}`);
        return;
      }
      if (n === 0) return;
      this.input(buf.slice(0, n));
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    sharedPoller().remove(this.pty.master);
    close(this.pty.master);
    close(this.pty.subordinate);
  }
}
