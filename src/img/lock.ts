import { closeSync, openSync } from 'node:fs';

/**
 * Holds the same write lock a running VM (or QEMU) takes on an image, for the duration of `fn`,
 * so tsvmm-img never modifies a disk that is in use. The lock lives on its own open file
 * description; closing it releases the lock.
 */
export async function withWriteLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  let fd: number;
  try {
    fd = openSync(path, 'r+');
  } catch {
    return fn(); // missing or unwritable files fail in `fn` with the engine's own message
  }
  try {
    const { lockImage } = await import('../block/lock.js'); // loads koffi: only when locking
    await lockImage(fd, path, 'write');
    return await fn();
  } finally {
    closeSync(fd);
  }
}
