import { TsvmmError } from '../errors.js';
import { SysError } from '../sys/errno.js';
/**
 * A KVM operation that failed: which ioctl (or step) and, when a syscall failed, its errno.
 * `code` is 'EKVM' for every KVM failure, except that a host without usable KVM gets 'ENOKVM' so
 * the CLI can say "this host cannot run VMs" rather than "this VM failed".
 */
export class KvmError extends TsvmmError {
    errno;
    constructor(message, details, code = 'EKVM') {
        super(code, message, details);
        this.errno = details?.errno;
    }
    /** Wraps a SysError from an ioctl with what we were doing. */
    static fromSys(what, e) {
        if (e instanceof SysError)
            return new KvmError(`${what} failed: ${e.errnoName}`, { errno: e.errno, errnoName: e.errnoName, op: what });
        return e;
    }
}
/** Runs one ioctl wrapper, re-throwing a SysError as a KvmError that names the operation. */
export function kvmCall(what, f) {
    try {
        return f();
    }
    catch (e) {
        throw KvmError.fromSys(what, e);
    }
}
//# sourceMappingURL=errors.js.map