/**
 * preadv2/pwritev2 with RWF_NOWAIT: a read or write that the page cache can satisfy completes at
 * once on the calling thread, and one that would have to wait for the disk fails with EAGAIN
 * instead of blocking. Disk backends try this first on the main thread and fall back to the
 * libuv pool only on a miss, saving a pool round trip (several microseconds) per cached request.
 */
import { koffi, libc } from './libc-handle.js';

const RWF_NOWAIT = 0x8;
const EOPNOTSUPP = 95;

/** The call would have waited (EAGAIN): do it the slow way this time. */
export const WOULD_BLOCK = -1;
/** The file system cannot do this without waiting at all (e.g. buffered writes on ext4). */
export const UNSUPPORTED = -2;

function result(n: number): number {
  if (n >= 0) return n;
  return koffi.errno() === EOPNOTSUPP ? UNSUPPORTED : WOULD_BLOCK;
}

const iovec = koffi.struct('tsvmm_iovec', { iov_base: 'void *', iov_len: 'size_t' });
const preadv2 = libc.func('intptr_t preadv2(int fd, const tsvmm_iovec *iov, int iovcnt, int64_t offset, int flags)');
const pwritev2 = libc.func('intptr_t pwritev2(int fd, const tsvmm_iovec *iov, int iovcnt, int64_t offset, int flags)');
void iovec;

/** Bytes read from the page cache without waiting (0 at end of file), or WOULD_BLOCK / UNSUPPORTED. */
export function readNow(fd: number, into: Uint8Array, position: number): number {
  return result(Number(preadv2(fd, [{ iov_base: into, iov_len: into.byteLength }], 1, position, RWF_NOWAIT)));
}

/** Bytes written into the page cache without waiting, or WOULD_BLOCK / UNSUPPORTED. */
export function writeNow(fd: number, data: Uint8Array, position: number): number {
  return result(Number(pwritev2(fd, [{ iov_base: data, iov_len: data.byteLength }], 1, position, RWF_NOWAIT)));
}
