import { open, type FileHandle } from 'node:fs/promises';
import type { BlockBackend } from '../backend.js';
import { lockImage } from '../lock.js';
import { layersOf, pathOf } from './walk.js';

/** Opens `path` and takes the QEMU-compatible image lock on it; the handle holds the lock. */
export async function lockedHandle(path: string, mode: 'read' | 'write'): Promise<FileHandle> {
  const h = await open(path, mode === 'write' ? 'r+' : 'r');
  try {
    await lockImage(h.fd, path, mode);
    return h;
  } catch (e) {
    await h.close();
    throw e;
  }
}

/**
 * Read-locks every backing file of `top`'s chain, handing each lock to `hold` as soon as it is
 * taken (so a later failure leaves the earlier locks with their holder, who releases them).
 * Backing files are read through, never written: the read locks keep others from writing them.
 */
export async function lockBackingChain(top: BlockBackend, hold: (path: string, handle: FileHandle) => Promise<void>): Promise<void> {
  for (const layer of layersOf(top).slice(1)) {
    const path = pathOf(layer);
    await hold(path, await lockedHandle(path, 'read'));
  }
}
