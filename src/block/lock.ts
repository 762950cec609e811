import { readdir, readFile, stat } from 'node:fs/promises';
import { TsvmmError } from '../errors.js';
import { F_RDLCK, F_UNLCK, F_WRLCK, ofdGetLock, ofdSetLock } from '../sys/libc.js';

/**
 * Disk image locking that interoperates with QEMU (block/file-posix.c, raw_apply_lock_bytes):
 * QEMU takes shared OFD read locks on single bytes, byte 100+i for each permission i it holds and
 * byte 200+i for each permission it refuses to share, then checks with F_OFD_GETLK that nobody
 * else holds the opposite byte. Permissions: 0 consistent read, 1 write, 2 write-unchanged,
 * 3 resize. tsvmm takes the same bytes, so:
 *   - a writer (holds read/write/write-unchanged/resize, shares neither write nor resize)
 *     excludes a second tsvmm, `qemu-img info` (which refuses to share write) and any QEMU
 *     write open;
 *   - readers (hold consistent read, refuse to share write/resize) coexist with each other and
 *     exclude writers.
 * OFD locks belong to the open file description: they vanish when the image is closed, and two
 * opens inside one process conflict like two processes do.
 */
const PERM_BASE = 100;
const SHARED_BASE = 200;
const PERM_CONSISTENT_READ = 0;
const PERM_WRITE = 1;
const PERM_WRITE_UNCHANGED = 2;
const PERM_RESIZE = 3;
const PERM_NAMES = ['consistent read', 'write', 'write unchanged', 'resize'];
const PERM_COUNT = PERM_NAMES.length;

export type LockMode = 'read' | 'write';

export interface LockHolder {
  pid: number;
  command: string;
}

/** Another process (or another open in this one) uses the image in a conflicting way. */
export class ImageLockedError extends TsvmmError {
  readonly holders: LockHolder[];

  constructor(path: string, mode: LockMode, conflict: string, holders: LockHolder[]) {
    const who = holders.length === 0
      ? 'by a process this user cannot see'
      : `by ${holders.map((h) => `pid ${h.pid} (${h.command})`).join(', ')}`;
    super(
      'EIMAGELOCKED',
      `disk image ${path} is locked ${who} (conflict on the "${conflict}" permission); stop that process or open the image read-only`,
      { path, mode, conflict, holders },
    );
    this.holders = holders;
  }
}

function permsFor(mode: LockMode): { held: number[]; unshared: number[] } {
  return mode === 'write'
    ? { held: [PERM_CONSISTENT_READ, PERM_WRITE, PERM_WRITE_UNCHANGED, PERM_RESIZE], unshared: [PERM_WRITE, PERM_RESIZE] }
    : { held: [PERM_CONSISTENT_READ], unshared: [PERM_WRITE, PERM_RESIZE] };
}

/**
 * Locks the image open on `fd` for `mode`; throws ImageLockedError naming the holder when another
 * open conflicts (and then releases what it took). Never blocks on the lock itself.
 */
export async function lockImage(fd: number, path: string, mode: LockMode): Promise<void> {
  const { held, unshared } = permsFor(mode);
  let conflict: string | null = null;
  for (const p of held) if (!ofdSetLock(fd, F_RDLCK, PERM_BASE + p, 1)) { conflict = PERM_NAMES[p]!; break; }
  if (conflict === null) for (const p of unshared) if (!ofdSetLock(fd, F_RDLCK, SHARED_BASE + p, 1)) { conflict = PERM_NAMES[p]!; break; }
  // Somebody refuses to share what we hold, or holds what we refuse to share.
  if (conflict === null) for (const p of held) if (ofdGetLock(fd, F_WRLCK, SHARED_BASE + p, 1) !== null) { conflict = PERM_NAMES[p]!; break; }
  if (conflict === null) for (const p of unshared) if (ofdGetLock(fd, F_WRLCK, PERM_BASE + p, 1) !== null) { conflict = PERM_NAMES[p]!; break; }
  if (conflict === null) return;
  unlockImage(fd);
  throw new ImageLockedError(path, mode, conflict, await findLockHolders(path));
}

/** Drops every image lock this open holds (closing the file does the same). */
export function unlockImage(fd: number): void {
  ofdSetLock(fd, F_UNLCK, PERM_BASE, PERM_COUNT);
  ofdSetLock(fd, F_UNLCK, SHARED_BASE, PERM_COUNT);
}

/**
 * Processes with the file open that hold locks on it. F_OFD_GETLK and /proc/locks report pid -1
 * for OFD locks, so this walks /proc/<pid>/fd for descriptors of the same inode whose fdinfo lists
 * a lock. Only called on a conflict; processes we may not inspect are skipped.
 */
export async function findLockHolders(path: string): Promise<LockHolder[]> {
  let target;
  try {
    target = await stat(path);
  } catch {
    return [];
  }
  const holders: LockHolder[] = [];
  const pids = (await readdir('/proc')).filter((n) => /^\d+$/.test(n));
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = await readdir(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const st = await stat(`/proc/${pid}/fd/${fd}`);
        if (st.ino !== target.ino || st.dev !== target.dev) continue;
        const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
        if (!/^lock:/m.test(info)) continue;
        holders.push({ pid: Number(pid), command: await commandOf(pid) });
        break;
      } catch {
        continue; // the fd closed meanwhile, or not ours to look at
      }
    }
  }
  return holders;
}

async function commandOf(pid: string): Promise<string> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    const cmd = raw.split('\0').filter((s) => s.length > 0).join(' ');
    return cmd.length > 200 ? `${cmd.slice(0, 200)}…` : cmd || '?';
  } catch {
    return '?';
  }
}
