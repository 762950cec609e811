import type { ErrorCode } from '../error-codes.js';
import { TsvmmError } from '../errors.js';
import { EINTR, SysError } from '../sys/errno.js';

/**
 * A KVM operation that failed: which ioctl (or step) and, when a syscall failed, its errno.
 * `code` is 'EKVM' for every KVM failure, except that a host without usable KVM gets 'ENOKVM' so
 * the CLI can say "this host cannot run VMs" rather than "this VM failed".
 */
export class KvmError extends TsvmmError {
  readonly errno: number | undefined;

  constructor(message: string, details?: Record<string, unknown> & { errno?: number }, code: Extract<ErrorCode, 'EKVM' | 'ENOKVM'> = 'EKVM') {
    super(code, message, details);
    this.errno = details?.errno;
  }

  /** Wraps a SysError from an ioctl with what we were doing. */
  static fromSys(what: string, e: unknown): unknown {
    if (e instanceof SysError) return new KvmError(`${what} failed: ${e.errnoName}`, { errno: e.errno, errnoName: e.errnoName, op: what });
    return e;
  }
}

/** A signal arriving mid-call is no reason to fail; a call that never stops failing so is. */
const MAX_EINTR_RETRIES = 100;

/**
 * Runs one ioctl wrapper, re-throwing a SysError as a KvmError that names the operation. A call
 * interrupted by a signal (EINTR: e.g. KVM_CREATE_VM on some hosts, under a profiler's SIGPROF or
 * a terminal's SIGWINCH) is made again, as QEMU does. KVM_RUN does not come through here: its
 * EINTR is the kick that stops a vCPU.
 */
export function kvmCall<T>(what: string, f: () => T): T {
  for (let attempt = 0; ; attempt++) {
    try {
      return f();
    } catch (e) {
      if (e instanceof SysError && e.errno === EINTR && attempt < MAX_EINTR_RETRIES) continue;
      throw KvmError.fromSys(what, e);
    }
  }
}
