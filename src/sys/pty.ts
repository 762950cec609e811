/**
 * Pseudo-terminals for `--serial pty` / `--console pty` (Cloud Hypervisor's): a master the VMM
 * reads and writes, and a subordinate end (`/dev/pts/N`) users attach to with `screen`, `minicom`
 * or `picocom`. The subordinate is put in raw mode, so the guest's bytes pass unchanged; the VMM
 * keeps it open itself, so the master never reports a hang-up while no user is attached (a poll
 * loop would spin on it) and output written meanwhile is buffered by the kernel up to its limit.
 */
import { koffi, libc } from './libc-handle.js';
import { close, fcntl, F_GETFL, F_SETFL, O_CLOEXEC, O_NONBLOCK, O_RDWR, open } from './libc.js';
import { SysError } from './errno.js';

const O_NOCTTY = 0o400;
/** struct termios is 60 bytes on x86-64 glibc; a little room does no harm. */
const TERMIOS_BYTES = 64;
const TCSANOW = 0;
const PATH_BYTES = 128;

const c = {
  posixOpenpt: libc.func('int posix_openpt(int flags)'),
  grantpt: libc.func('int grantpt(int fd)'),
  unlockpt: libc.func('int unlockpt(int fd)'),
  ptsnameR: libc.func('int ptsname_r(int fd, void *buf, size_t len)'),
  tcgetattr: libc.func('int tcgetattr(int fd, void *termios)'),
  tcsetattr: libc.func('int tcsetattr(int fd, int when, const void *termios)'),
  cfmakeraw: libc.func('void cfmakeraw(void *termios)'),
};

export interface Pty {
  /** The VMM's end, non-blocking. */
  readonly master: number;
  /** The subordinate end, held open by the VMM (see above). */
  readonly subordinate: number;
  /** The subordinate's path, e.g. /dev/pts/3: what users open. */
  readonly path: string;
}

function check(ret: number, call: string): number {
  if (ret < 0) throw new SysError(call, koffi.errno());
  return ret;
}

/** Opens a new pseudo-terminal pair with a raw, non-blocking master. */
export function openPty(): Pty {
  const master = check(c.posixOpenpt(O_RDWR | O_NOCTTY | O_CLOEXEC) as number, 'posix_openpt');
  try {
    check(c.grantpt(master) as number, 'grantpt');
    check(c.unlockpt(master) as number, 'unlockpt');
    const name = new Uint8Array(PATH_BYTES);
    const err = c.ptsnameR(master, name, name.length) as number;
    if (err !== 0) throw new SysError('ptsname_r', err);
    const path = Buffer.from(name.subarray(0, name.indexOf(0))).toString('utf8');
    const subordinate = open(path, O_RDWR | O_NOCTTY);
    try {
      const termios = new Uint8Array(TERMIOS_BYTES);
      check(c.tcgetattr(subordinate, termios) as number, 'tcgetattr');
      c.cfmakeraw(termios);
      check(c.tcsetattr(subordinate, TCSANOW, termios) as number, 'tcsetattr');
      fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    } catch (e) {
      close(subordinate);
      throw e;
    }
    return { master, subordinate, path };
  } catch (e) {
    close(master);
    throw e;
  }
}
