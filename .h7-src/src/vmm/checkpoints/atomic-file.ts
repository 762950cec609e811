import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/** fsync of a directory, so a rename or a new file in it survives a crash. */
export async function syncDir(dir: string): Promise<void> {
  const h = await open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

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
  await syncDir(dirname(path));
}
