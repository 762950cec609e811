import { TsvmmError } from '../errors.js';
import { koffi } from './libc-handle.js';

/** errno number → symbolic name ("ENOENT"), from koffi's table of the host's POSIX codes. */
const ERRNO_NAMES: ReadonlyMap<number, string> = (() => {
  const m = new Map<number, string>();
  for (const [name, value] of Object.entries(koffi.os.errno)) {
    // Aliases (EWOULDBLOCK = EAGAIN, EDEADLOCK = EDEADLK) keep the first, canonical name.
    if (!m.has(value)) m.set(value, name);
  }
  return m;
})();

export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

/** The named errno value, e.g. `errnoValue('EINTR')`; throws for a name this host does not know. */
export function errnoValue(name: string): number {
  const v = koffi.os.errno[name];
  if (v === undefined) throw new Error(`unknown errno name ${name}`);
  return v;
}

export const EINTR = errnoValue('EINTR');
export const EAGAIN = errnoValue('EAGAIN');
export const ENOENT = errnoValue('ENOENT');
export const EACCES = errnoValue('EACCES');
export const EPERM = errnoValue('EPERM');
export const ENOMEM = errnoValue('ENOMEM');
export const ENXIO = errnoValue('ENXIO');
export const EINVAL = errnoValue('EINVAL');
export const EEXIST = errnoValue('EEXIST');
export const E2BIG = errnoValue('E2BIG');

/**
 * A failed system call: `errno` and the call's name are kept so callers can branch on them and
 * add context (the sys layer, like rust-vmm's kvm-ioctls, reports bare errno; the caller knows
 * what it was trying to do).
 */
export class SysError extends TsvmmError {
  readonly errno: number;
  readonly syscall: string;

  constructor(syscall: string, errno: number, what?: string) {
    const name = errnoName(errno);
    super('ESYS', `${syscall}${what === undefined ? '' : ` (${what})`} failed: ${name}`, { syscall, errno, errnoName: name });
    this.errno = errno;
    this.syscall = syscall;
  }

  get errnoName(): string {
    return errnoName(this.errno);
  }
}
