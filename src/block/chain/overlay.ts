import { open, rm, type FileHandle } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ConfigError } from '../../errors.js';
import { syncDirectory } from '../../util/fs.js';
import { createQcow2 } from '../qcow2/create.js';
import { backingNameFor } from './merge.js';

/**
 * Creates an empty qcow2 overlay of `size` bytes over `backingPath` (never over an existing
 * file), durable (file and directory entry) before it returns. The backing name is relative when
 * the overlay sits next to its backing file, and the backing format is recorded so the backing
 * file is never probed.
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
