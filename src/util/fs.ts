import { access, open } from 'node:fs/promises';

/** Whether `path` names something (a dangling symlink does not count). */
export async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

/** fsync on a directory makes the creations and renames inside it durable. */
export async function syncDirectory(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Why opening or reading a file failed, in words for an error message (the caller names the file). */
export function fileErrorReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory';
  return code ?? (e instanceof Error ? e.message : String(e));
}
