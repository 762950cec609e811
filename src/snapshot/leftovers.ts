import { randomBytes } from 'node:crypto';
import { readdir, rename, rm } from 'node:fs/promises';
import { exists, syncDirectory } from '../util/fs.js';
import { basename, dirname, join } from 'node:path';

/**
 * The sibling directories an atomic snapshot write leaves behind when it is interrupted:
 * `<dir>.tmp-<pid>-<hex>` (a new snapshot being built) and `<dir>.old-<pid>-<hex>` (the previous
 * snapshot, moved aside just before the new one is renamed in). See writer.ts for when each can
 * survive a crash. The pid tells a live writer's directories from a dead one's.
 */

export type LeftoverKind = 'tmp' | 'old';

export interface Leftover {
  kind: LeftoverKind;
  path: string;
  pid: number;
}

export function siblingPath(dir: string, kind: LeftoverKind): string {
  return `${dir}.${kind}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function findLeftovers(dir: string): Promise<Leftover[]> {
  const parent = dirname(dir);
  const pattern = new RegExp(`^${escapeRegExp(basename(dir))}\\.(tmp|old)-(\\d+)-[0-9a-f]{8}$`);
  let names: string[];
  try {
    names = await readdir(parent);
  } catch {
    return [];
  }
  const found: Leftover[] = [];
  for (const name of names) {
    const m = pattern.exec(name);
    if (m !== null) found.push({ kind: m[1] as LeftoverKind, path: join(parent, name), pid: Number(m[2]) });
  }
  return found.sort((a, b) => a.path.localeCompare(b.path));
}


export interface RecoverOptions {
  /** Whether the writer with this pid may still be working; defaults to "the process exists". */
  isWriterAlive?: (pid: number) => boolean;
}

/**
 * Repairs what an interrupted write left around `dir`, ignoring the directories of writers that
 * are still running (this process included):
 * - `dir` missing and a dead writer's `.old-*` present: the replace stopped between moving the
 *   old snapshot aside and renaming the new one in; the new one was never committed, so the old
 *   one is renamed back.
 * - dead writers' `.tmp-*`: uncommitted, removed.
 * - dead writers' `.old-*` while `dir` exists: the replace committed, removed.
 * Returns one line per action taken, for logs.
 */
export async function recoverSnapshotDir(dir: string, options: RecoverOptions = {}): Promise<string[]> {
  const writerAlive = options.isWriterAlive ?? isProcessAlive;
  const actions: string[] = [];
  const dead = (await findLeftovers(dir)).filter((l) => !writerAlive(l.pid));
  if (!(await exists(dir))) {
    const old = dead.filter((l) => l.kind === 'old').pop();
    if (old !== undefined) {
      await rename(old.path, dir);
      await syncDirectory(dirname(dir));
      actions.push(`restored ${old.path} to ${dir} (a replace was interrupted before the new snapshot was committed)`);
      dead.splice(dead.indexOf(old), 1);
    }
  }
  for (const l of dead) {
    await rm(l.path, { recursive: true, force: true });
    actions.push(`removed ${l.kind === 'tmp' ? 'uncommitted' : 'superseded'} ${l.path}`);
  }
  return actions;
}
