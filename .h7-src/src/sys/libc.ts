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
export function errno(): number {
  return koffi.errno();
}

function check(ret: number, syscall: string, what?: string): number {
  if (ret < 0) throw new SysError(syscall, koffi.errno(), what);
  return ret;
}

function checkBig(ret: number | bigint, syscall: string, what?: string): number {
  const n = Number(ret);
  if (n < 0) throw new SysError(syscall, koffi.errno(), what);
  return n;
}

// ---- files ------------------------------------------------------------------------------------
export function open(path: string, flags: number, mode = 0o600): number {
  return check(c.open(path, flags | O_CLOEXEC, mode) as number, 'open', path);
}

export function close(fd: number): void {
  check(c.close(fd) as number, 'close');
}

export function read(fd: number, buf: Uint8Array): number {
  return checkBig(c.read(fd, buf, buf.byteLength), 'read');
}

export function write(fd: number, buf: Uint8Array): number {
  return checkBig(c.write(fd, buf, buf.byteLength), 'write');
}

export function pread(fd: number, buf: Uint8Array, offset: number): number {
  return checkBig(c.pread(fd, buf, buf.byteLength, offset), 'pread');
}

export function pwrite(fd: number, buf: Uint8Array, offset: number): number {
  return checkBig(c.pwrite(fd, buf, buf.byteLength, offset), 'pwrite');
}

/**
 * A read on the libuv thread pool (koffi `.async`), so the calling thread's event loop keeps
 * running while the read blocks. Rejects with SysError. The buffer must stay untouched until the
 * promise settles. Each pending call holds one pool thread (UV_THREADPOOL_SIZE, default 4).
 */
export function readAsync(fd: number, buf: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    c.read.async(fd, buf, buf.byteLength, (err: unknown, ret: number | bigint) => {
      if (err) { reject(err instanceof Error ? err : new Error(String(err))); return; }
      const n = Number(ret);
      // The call ran on a pool thread; koffi.errno() here is what koffi carried back for it.
      if (n < 0) { reject(new SysError('read', koffi.errno(), `async read of fd ${fd}`)); return; }
      resolve(n);
    });
  });
}

/** lseek; for SEEK_DATA/SEEK_HOLE past the last data returns -1 (ENXIO) instead of throwing. */
export function lseek(fd: number, offset: number, whence: number): number {
  const r = Number(c.lseek(fd, offset, whence));
  if (r < 0) {
    const e = koffi.errno();
    if (e === ENXIO && (whence === SEEK_DATA || whence === SEEK_HOLE)) return -1;
    throw new SysError('lseek', e);
  }
  return r;
}

export function ftruncate(fd: number, length: number): void {
  check(c.ftruncate(fd, length) as number, 'ftruncate');
}

export function memfdCreate(name: string, flags = MFD_CLOEXEC): number {
  return check(c.memfdCreate(name, flags) as number, 'memfd_create', name);
}

/** eventfd(2); EFD_CLOEXEC is always added. */
export function eventfd(initial: number, flags: number): number {
  return check(c.eventfd(initial, flags | EFD_CLOEXEC) as number, 'eventfd');
}

export function fcntl(fd: number, cmd: number, arg = 0): number {
  return check(c.fcntlInt(fd, cmd, arg) as number, 'fcntl');
}

/** struct flock on x86-64: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid. */
export const FLOCK_SIZE = 32;

export interface FileLock {
  type: number; // F_RDLCK | F_WRLCK | F_UNLCK
  whence: number;
  start: number;
  len: number;
  pid: number;
}

function encodeFlock(l: FileLock): Uint8Array {
  const b = new Uint8Array(FLOCK_SIZE);
  const v = new DataView(b.buffer);
  v.setInt16(0, l.type, true);
  v.setInt16(2, l.whence, true);
  v.setBigInt64(8, BigInt(l.start), true);
  v.setBigInt64(16, BigInt(l.len), true);
  v.setInt32(24, l.pid, true); // must be 0 for OFD locks
  return b;
}

function decodeFlock(b: Uint8Array): FileLock {
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
export function ofdSetLock(fd: number, type: number, start = 0, len = 0): boolean {
  const b = encodeFlock({ type, whence: SEEK_SET, start, len, pid: 0 });
  const r = c.fcntlPtr(fd, F_OFD_SETLK, b) as number;
  if (r < 0) {
    const e = koffi.errno();
    if (e === koffi.os.errno.EAGAIN || e === koffi.os.errno.EACCES) return false;
    throw new SysError('fcntl', e, 'F_OFD_SETLK');
  }
  return true;
}

/** F_OFD_GETLK: the first lock that would conflict with `type` over the range, or null. */
export function ofdGetLock(fd: number, type: number, start = 0, len = 0): FileLock | null {
  const b = encodeFlock({ type, whence: SEEK_SET, start, len, pid: 0 });
  check(c.fcntlPtr(fd, F_OFD_GETLK, b) as number, 'fcntl', 'F_OFD_GETLK');
  const l = decodeFlock(b);
  return l.type === F_UNLCK ? null : l;
}

// ---- ioctl --------------------------------------------------------------------------------------
/** ioctl whose argument points at `arg` (in, out or both). */
export function ioctlBuf(fd: number, request: number, arg: Uint8Array, what?: string): number {
  return check(c.ioctlPtr(fd, request, arg) as number, 'ioctl', what);
}

/** ioctl whose argument is an integer (or none: pass 0). */
export function ioctlInt(fd: number, request: number, arg: number | bigint = 0, what?: string): number {
  return check(c.ioctlInt(fd, request, arg) as number, 'ioctl', what);
}

/**
 * ioctl returning -errno instead of throwing, for hot paths that expect some errors (KVM_RUN
 * returns EINTR when kicked) and should not pay for an exception.
 */
export function ioctlIntRaw(fd: number, request: number, arg: number | bigint = 0): number {
  const r = c.ioctlInt(fd, request, arg) as number;
  return r < 0 ? -koffi.errno() : r;
}

// ---- memory --------------------------------------------------------------------------------------
/** mmap; returns the mapping's address. `what` names the mapping in the error. */
export function mmap(length: number, prot: number, flags: number, fd = -1, offset = 0, what?: string): bigint {
  const p = c.mmap(null, length, prot, flags, fd, offset) as bigint | null;
  // MAP_FAILED is (void *)-1.
  if (p === null || p === 0xffff_ffff_ffff_ffffn) throw new SysError('mmap', koffi.errno(), what);
  return BigInt(p);
}

export function munmap(address: bigint, length: number): void {
  check(c.munmap(address, length) as number, 'munmap');
}

export function madvise(address: bigint, length: number, advice: number): void {
  check(c.madvise(address, length, advice) as number, 'madvise');
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
export function viewAt(address: bigint, length: number): ArrayBuffer {
  if (typeof address !== 'bigint' || address <= 0n) throw new RangeError(`viewAt: bad address ${String(address)}`);
  if (!Number.isSafeInteger(length) || length <= 0 || length > MAX_VIEW_BYTES) {
    throw new RangeError(`viewAt: length ${length} is outside 1..${MAX_VIEW_BYTES} (the runtime's ArrayBuffer limit)`);
  }
  return koffi.view(address, length);
}

// ---- threads and signals --------------------------------------------------------------------------
/** This thread's pthread_t, as a bigint (pass it to another thread, then to pthreadKill). */
export function pthreadSelf(): bigint {
  return BigInt(c.pthreadSelf() as number | bigint);
}

/** Sends `signal` to a thread of this process. pthread_kill returns the error, not -1/errno. */
export function pthreadKill(thread: bigint, signal: number): void {
  const r = c.pthreadKill(thread, signal) as number;
  if (r !== 0) throw new SysError('pthread_kill', r);
}

export function getpid(): number {
  return c.getpid() as number;
}

export function gettid(): number {
  return c.gettid() as number;
}
