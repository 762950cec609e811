import { TsvmmError } from '../errors.js';
import { SysError } from '../sys/errno.js';

/**
 * A KVM operation that failed: which ioctl (or step) and, when a syscall failed, its errno.
 * `code` is 'EKVM' for every KVM failure, except that a host without usable KVM gets 'ENOKVM' so
 * the CLI can say "this host cannot run VMs" rather than "this VM failed".
 */
export class KvmError extends TsvmmError {
  readonly errno: number | undefined;

  constructor(message: string, details?: Record<string, unknown> & { errno?: number }, code = 'EKVM') {
    super(code, message, details);
    this.errno = details?.errno;
  }

  /** Wraps a SysError from an ioctl with what we were doing. */
  static fromSys(what: string, e: unknown): unknown {
    if (e instanceof SysError) return new KvmError(`${what} failed: ${e.errnoName}`, { errno: e.errno, errnoName: e.errnoName, op: what });
    return e;
  }
}

/** Runs one ioctl wrapper, re-throwing a SysError as a KvmError that names the operation. */
export function kvmCall<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw KvmError.fromSys(what, e);
  }
}
