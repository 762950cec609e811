import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { syncDirectory } from '../../util/fs.js';

/**
 * Replaces `path` with `text` so that after a crash the file holds either the old or the new
 * text, never a mix: write a temporary file, fsync it, rename it over, fsync the directory.
 */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  const h = await open(tmp, 'w', 0o644);
  try {
    await h.writeFile(text);
    await h.sync();
  } catch (e) {
    await h.close();
    await rm(tmp, { force: true });
    throw e;
  }
  await h.close();
  await rename(tmp, path);
  await syncDirectory(dirname(path));
}
