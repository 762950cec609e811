import { koffi, libc } from './libc-handle.js';
import { SysError } from './errno.js';

/**
 * fallocate(2) on the libuv thread pool, so punching a hole in a large disk image never stalls
 * the main event loop. Rejects with SysError (errno carried back by koffi from the pool thread).
 */
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_ZERO_RANGE = 0x10;

const fallocateFn = libc.func('int fallocate(int fd, int mode, int64_t off, int64_t len)');

export function fallocateAsync(fd: number, mode: number, offset: number, length: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fallocateFn.async(fd, mode, offset, length, (err: unknown, ret: number) => {
      if (err) { reject(err instanceof Error ? err : new Error(String(err))); return; }
      if (ret < 0) { reject(new SysError('fallocate', koffi.errno(), `mode 0x${mode.toString(16)} of fd ${fd}`)); return; }
      resolve();
    });
  });
}
