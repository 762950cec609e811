/**
 * qcow2 overlays on top of a disk's current image: creating them (backing name relative when the
 * overlay sits next to its backing file, backing format recorded so the backing is never probed),
 * locking them, and walking a chain's file names.
 */
import { open, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, extname, resolve } from 'node:path';
import type { BlockBackend } from '../../block/backend.js';
import { lockImage } from '../../block/lock.js';
import { createQcow2 } from '../../block/qcow2/create.js';
import { Qcow2Image } from '../../block/qcow2/image.js';
import { ConfigError } from '../../errors.js';
import type { Disk } from '../disks.js';
import { syncDirectory } from '../../snapshot/leftovers.js';

/** The name to store in an overlay for `backingPath`: its base name when both share a folder. */
export function backingNameFor(overlayPath: string, backingPath: string): string {
  const o = resolve(overlayPath);
  const b = resolve(backingPath);
  return dirname(o) === dirname(b) ? basename(b) : b;
}

/**
 * Creates an empty qcow2 overlay of `size` bytes over `backingPath` (never over an existing
 * file), durable (file and directory entry) before it returns.
 */
export async function createOverlay(overlayPath: string, backingPath: string, backingFormat: string, size: number): Promise<void> {
  const path = resolve(overlayPath);
  if (path === resolve(backingPath)) throw new ConfigError(`overlay ${path} would be its own backing file`);
  // 'wx' reserves the name: a second snapshot racing for it, or an existing image, fails here.
  let reserve: FileHandle;
  try {
    reserve = await open(path, 'wx', 0o644);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new ConfigError(`${path} already exists: choose a new file name for the overlay`);
    if (code === 'ENOENT') throw new ConfigError(`cannot create ${path}: its folder does not exist`);
    throw new ConfigError(`cannot create ${path}: ${code ?? (e as Error).message}`);
  }
  await reserve.close();
  try {
    await createQcow2(path, { size, backingFile: backingNameFor(path, backingPath), backingFormat });
    await syncDirectory(dirname(path));
  } catch (e) {
    await rm(path, { force: true });
    throw e;
  }
}

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

/** File paths of a chain, top first (raw or qcow2 layers as the engine opened them). */
export function chainPaths(top: BlockBackend): string[] {
  const out: string[] = [];
  let layer: BlockBackend | null = top;
  while (layer !== null) {
    const path = (layer as { path?: unknown }).path;
    if (typeof path === 'string') out.push(resolve(path));
    layer = layer instanceof Qcow2Image ? layer.backing : null;
  }
  return out;
}

/** "/d/vm.S1.qcow2" → "vm.S1": a file's name without its folder and last extension. */
export function stemOf(path: string): string {
  return basename(path, extname(path));
}

/** Read-locks every backing file of `disk`'s chain (the disk keeps the locks until it closes). */
export async function lockBackingFiles(disk: Disk): Promise<void> {
  for (const path of chainPaths(disk.backend).slice(1)) await disk.holdBackingLock(path, await lockedHandle(path, 'read'));
}
