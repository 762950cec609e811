import { constants as bufferConstants } from 'node:buffer';
import { koffi, libc } from './libc-handle.js';
import { SysError, ENXIO } from './errno.js';
/**
 * Thin koffi bindings to the libc calls the VMM needs. Every wrapper throws SysError on -1 (with
 * the errno read right after the call, before any other FFI call can clobber it) and returns plain
 * numbers; addresses are bigints. Variadic C prototypes (open, ioctl, fcntl) are declared with a
 * fixed third argument: on x86-64 System V integer/pointer arguments are passed the same way for
 * variadic and fixed calls, and a fixed prototype avoids koffi's per-call variadic type parsing.
 */
// ---- constants (x86-64 Linux values) -------------------------------------------------------
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
export const MAP_POPULATE = 0x8000;
export const MADV_DONTNEED = 4;
export const MADV_REMOVE = 9;
export const MADV_DONTFORK = 10;
export const MADV_MERGEABLE = 12;
export const MADV_HUGEPAGE = 14;
export const MADV_WILLNEED = 3;
/** Linux 5.14+: populate page tables for reading (file pages stay shared, nothing is copied). */
export const MADV_POPULATE_READ = 22;
export const MFD_CLOEXEC = 0x0001;
export const MFD_ALLOW_SEALING = 0x0002;
export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;
export const EFD_SEMAPHORE = 1;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
export const F_GETFD = 1;
export const F_SETFD = 2;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const FD_CLOEXEC = 1;
export const F_OFD_GETLK = 36;
export const F_OFD_SETLK = 37;
export const F_OFD_SETLKW = 38;
export const F_RDLCK = 0;
export const F_WRLCK = 1;
export const F_UNLCK = 2;
export const SIGUSR1 = 10;
export const SIGUSR2 = 12;
// ---- raw declarations ------------------------------------------------------------------------
const c = {
    open: libc.func('int open(const char *path, int flags, uint32_t mode)'),
    close: libc.func('int close(int fd)'),
    ioctlPtr: libc.func('ioctl', 'int', ['int', 'unsigned long', 'void *']),
    ioctlInt: libc.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']),
    mmap: libc.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)'),
    munmap: libc.func('int munmap(uintptr_t addr, size_t len)'),
    madvise: libc.func('int madvise(uintptr_t addr, size_t len, int advice)'),
    memfdCreate: libc.func('int memfd_create(const char *name, unsigned int flags)'),
    ftruncate: libc.func('int ftruncate(int fd, int64_t len)'),
    eventfd: libc.func('int eventfd(unsigned int initval, int flags)'),
    read: libc.func('intptr_t read(int fd, void *buf, size_t len)'),
    write: libc.func('intptr_t write(int fd, const void *buf, size_t len)'),
    pread: libc.func('intptr_t pread(int fd, void *buf, size_t len, int64_t off)'),
    pwrite: libc.func('intptr_t pwrite(int fd, const void *buf, size_t len, int64_t off)'),
    lseek: libc.func('int64_t lseek(int fd, int64_t off, int whence)'),
    fcntlInt: libc.func('fcntl', 'int', ['int', 'int', 'long']),
    fcntlPtr: libc.func('fcntl', 'int', ['int', 'int', 'void *']),
    pthreadSelf: libc.func('unsigned long pthread_self(void)'),
    pthreadKill: libc.func('int pthread_kill(unsigned long thread, int sig)'),
    getpid: libc.func('int getpid(void)'),
    gettid: libc.func('int gettid(void)'),
};
/** Reads errno of the last FFI call on this thread. */
export function errno() {
    return koffi.errno();
}
function check(ret, syscall, what) {
    if (ret < 0)
        throw new SysError(syscall, koffi.errno(), what);
    return ret;
}
function checkBig(ret, syscall, what) {
    const n = Number(ret);
    if (n < 0)
        throw new SysError(syscall, koffi.errno(), what);
    return n;
}
// ---- files ------------------------------------------------------------------------------------
export function open(path, flags, mode = 0o600) {
    return check(c.open(path, flags | O_CLOEXEC, mode), 'open', path);
}
export function close(fd) {
    check(c.close(fd), 'close');
}
export function read(fd, buf) {
    return checkBig(c.read(fd, buf, buf.byteLength), 'read');
}
export function write(fd, buf) {
    return checkBig(c.write(fd, buf, buf.byteLength), 'write');
}
export function pread(fd, buf, offset) {
    return checkBig(c.pread(fd, buf, buf.byteLength, offset), 'pread');
}
export function pwrite(fd, buf, offset) {
    return checkBig(c.pwrite(fd, buf, buf.byteLength, offset), 'pwrite');
}
/**
 * A read on the libuv thread pool (koffi `.async`), so the calling thread's event loop keeps
 * running while the read blocks. Rejects with SysError. The buffer must stay untouched until the
 * promise settles. Each pending call holds one pool thread (UV_THREADPOOL_SIZE, default 4).
 */
export function readAsync(fd, buf) {
    return new Promise((resolve, reject) => {
        c.read.async(fd, buf, buf.byteLength, (err, ret) => {
            if (err) {
                reject(err instanceof Error ? err : new Error(String(err)));
                return;
            }
            const n = Number(ret);
            // The call ran on a pool thread; koffi.errno() here is what koffi carried back for it.
            if (n < 0) {
                reject(new SysError('read', koffi.errno(), `async read of fd ${fd}`));
                return;
            }
            resolve(n);
        });
    });
}
/** lseek; for SEEK_DATA/SEEK_HOLE past the last data returns -1 (ENXIO) instead of throwing. */
export function lseek(fd, offset, whence) {
    const r = Number(c.lseek(fd, offset, whence));
    if (r < 0) {
        const e = koffi.errno();
        if (e === ENXIO && (whence === SEEK_DATA || whence === SEEK_HOLE))
            return -1;
        throw new SysError('lseek', e);
    }
    return r;
}
export function ftruncate(fd, length) {
    check(c.ftruncate(fd, length), 'ftruncate');
}
export function memfdCreate(name, flags = MFD_CLOEXEC) {
    return check(c.memfdCreate(name, flags), 'memfd_create', name);
}
/** eventfd(2); EFD_CLOEXEC is always added. */
export function eventfd(initial, flags) {
    return check(c.eventfd(initial, flags | EFD_CLOEXEC), 'eventfd');
}
export function fcntl(fd, cmd, arg = 0) {
    return check(c.fcntlInt(fd, cmd, arg), 'fcntl');
}
/** struct flock on x86-64: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid. */
export const FLOCK_SIZE = 32;
function encodeFlock(l) {
    const b = new Uint8Array(FLOCK_SIZE);
    const v = new DataView(b.buffer);
    v.setInt16(0, l.type, true);
    v.setInt16(2, l.whence, true);
    v.setBigInt64(8, BigInt(l.start), true);
    v.setBigInt64(16, BigInt(l.len), true);
    v.setInt32(24, l.pid, true); // must be 0 for OFD locks
    return b;
}
function decodeFlock(b) {
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    return {
        type: v.getInt16(0, true),
        whence: v.getInt16(2, true),
        start: Number(v.getBigInt64(8, true)),
        len: Number(v.getBigInt64(16, true)),
        pid: v.getInt32(24, true),
    };
}
/**
 * Open-file-description lock (F_OFD_SETLK): owned by the open file, not the process, so two
 * opens in one process conflict, as they must for "disk image already in use" detection.
 * Returns false when another holder conflicts (EAGAIN/EACCES), throws on other errors.
 */
export function ofdSetLock(fd, type, start = 0, len = 0) {
    const b = encodeFlock({ type, whence: SEEK_SET, start, len, pid: 0 });
    const r = c.fcntlPtr(fd, F_OFD_SETLK, b);
    if (r < 0) {
        const e = koffi.errno();
        if (e === koffi.os.errno.EAGAIN || e === koffi.os.errno.EACCES)
            return false;
        throw new SysError('fcntl', e, 'F_OFD_SETLK');
    }
    return true;
}
/** F_OFD_GETLK: the first lock that would conflict with `type` over the range, or null. */
export function ofdGetLock(fd, type, start = 0, len = 0) {
    const b = encodeFlock({ type, whence: SEEK_SET, start, len, pid: 0 });
    check(c.fcntlPtr(fd, F_OFD_GETLK, b), 'fcntl', 'F_OFD_GETLK');
    const l = decodeFlock(b);
    return l.type === F_UNLCK ? null : l;
}
// ---- ioctl --------------------------------------------------------------------------------------
/** ioctl whose argument points at `arg` (in, out or both). */
export function ioctlBuf(fd, request, arg, what) {
    return check(c.ioctlPtr(fd, request, arg), 'ioctl', what);
}
/** ioctl whose argument is an integer (or none: pass 0). */
export function ioctlInt(fd, request, arg = 0, what) {
    return check(c.ioctlInt(fd, request, arg), 'ioctl', what);
}
/**
 * ioctl returning -errno instead of throwing, for hot paths that expect some errors (KVM_RUN
 * returns EINTR when kicked) and should not pay for an exception.
 */
export function ioctlIntRaw(fd, request, arg = 0) {
    const r = c.ioctlInt(fd, request, arg);
    return r < 0 ? -koffi.errno() : r;
}
// ---- memory --------------------------------------------------------------------------------------
/** mmap; returns the mapping's address. `what` names the mapping in the error. */
export function mmap(length, prot, flags, fd = -1, offset = 0, what) {
    const p = c.mmap(null, length, prot, flags, fd, offset);
    // MAP_FAILED is (void *)-1.
    if (p === null || p === 0xffffffffffffffffn)
        throw new SysError('mmap', koffi.errno(), what);
    return BigInt(p);
}
export function munmap(address, length) {
    check(c.munmap(address, length), 'munmap');
}
export function madvise(address, length, advice) {
    check(c.madvise(address, length, advice), 'madvise');
}
/**
 * The largest ArrayBuffer `viewAt` can make. Measured on Node 20.20 + koffi 3.3.4: a 4 GiB
 * (2^32 bytes) view works, 4 GiB + 4 KiB aborts the process inside koffi (V8's ArrayBuffer limit,
 * buffer.constants.MAX_LENGTH, is 2^32 there), so the check must happen before the call.
 */
export const MAX_VIEW_BYTES = Math.min(bufferConstants.MAX_LENGTH, 2 ** 32);
/**
 * An ArrayBuffer over `length` bytes at `address` in this process, without copying. Works in
 * any thread: an address mapped by the main thread can be viewed from a worker, since threads
 * share the address space. The caller guarantees the mapping outlives the view.
 */
export function viewAt(address, length) {
    if (typeof address !== 'bigint' || address <= 0n)
        throw new RangeError(`viewAt: bad address ${String(address)}`);
    if (!Number.isSafeInteger(length) || length <= 0 || length > MAX_VIEW_BYTES) {
        throw new RangeError(`viewAt: length ${length} is outside 1..${MAX_VIEW_BYTES} (the runtime's ArrayBuffer limit)`);
    }
    return koffi.view(address, length);
}
// ---- threads and signals --------------------------------------------------------------------------
/** This thread's pthread_t, as a bigint (pass it to another thread, then to pthreadKill). */
export function pthreadSelf() {
    return BigInt(c.pthreadSelf());
}
/** Sends `signal` to a thread of this process. pthread_kill returns the error, not -1/errno. */
export function pthreadKill(thread, signal) {
    const r = c.pthreadKill(thread, signal);
    if (r !== 0)
        throw new SysError('pthread_kill', r);
}
export function getpid() {
    return c.getpid();
}
export function gettid() {
    return c.gettid();
}
//# sourceMappingURL=libc.js.map