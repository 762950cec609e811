import { randomBytes } from 'node:crypto';
import { open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
export function siblingPath(dir, kind) {
    return `${dir}.${kind}-${process.pid}-${randomBytes(4).toString('hex')}`;
}
function escapeRegExp(s) {
    return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
export function isProcessAlive(pid) {
    try {
        process.kill(pid, 0);
        return true;
    }
    catch (e) {
        // EPERM: it exists but belongs to someone else.
        return e.code === 'EPERM';
    }
}
export async function findLeftovers(dir) {
    const parent = dirname(dir);
    const pattern = new RegExp(`^${escapeRegExp(basename(dir))}\\.(tmp|old)-(\\d+)-[0-9a-f]{8}$`);
    let names;
    try {
        names = await readdir(parent);
    }
    catch {
        return [];
    }
    const found = [];
    for (const name of names) {
        const m = pattern.exec(name);
        if (m !== null)
            found.push({ kind: m[1], path: join(parent, name), pid: Number(m[2]) });
    }
    return found.sort((a, b) => a.path.localeCompare(b.path));
}
/** fsync on a directory makes the renames inside it durable. */
export async function syncDirectory(path) {
    const fh = await open(path, 'r');
    try {
        await fh.sync();
    }
    finally {
        await fh.close();
    }
}
async function exists(path) {
    try {
        await stat(path);
        return true;
    }
    catch {
        return false;
    }
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
export async function recoverSnapshotDir(dir, options = {}) {
    const writerAlive = options.isWriterAlive ?? isProcessAlive;
    const actions = [];
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
//# sourceMappingURL=leftovers.js.map