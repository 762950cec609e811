/**
 * What identifies the disk image a memory snapshot was taken against. Restoring guest memory over
 * a disk that moved on since then corrupts the guest's filesystem (its page cache and the disk
 * disagree), so restore compares identities and refuses a mismatch unless forced.
 *
 * - Same path as at snapshot time: the file must be the same inode, size and mtime (no read).
 * - A different path (a clone's copy of the disk): size and a content sample must match — the
 *   first and last MiB plus 64 evenly spaced 64 KiB blocks, hashed (a few MiB of reads).
 */
import { createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import type { DiskConfig } from './config.js';
import { ConfigError } from '../errors.js';

export interface DiskIdentity {
  [key: string]: string | number;
  path: string;
  file_size: number;
  mtime_ns: string;
  inode: string;
  sample_sha256: string;
}

const EDGE = 1 << 20;
const BLOCK = 64 << 10;
const BLOCKS = 64;

async function sampleHash(path: string, size: number): Promise<string> {
  const h = createHash('sha256');
  const fh = await open(path, 'r');
  try {
    const ranges: Array<[number, number]> = [];
    if (size <= 2 * EDGE + BLOCKS * BLOCK) {
      ranges.push([0, size]);
    } else {
      ranges.push([0, EDGE]);
      const step = Math.floor((size - 2 * EDGE) / BLOCKS);
      for (let i = 0; i < BLOCKS; i++) ranges.push([EDGE + i * step, BLOCK]);
      ranges.push([size - EDGE, EDGE]);
    }
    const buf = Buffer.alloc(Math.max(EDGE, BLOCK));
    for (const [off, len] of ranges) {
      let done = 0;
      while (done < len) {
        const n = Math.min(buf.length, len - done);
        const { bytesRead } = await fh.read(buf, 0, n, off + done);
        if (bytesRead === 0) break;
        h.update(buf.subarray(0, bytesRead));
        done += bytesRead;
      }
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

export async function diskIdentity(path: string): Promise<DiskIdentity> {
  const st = await stat(path, { bigint: true });
  const size = Number(st.size);
  return { path, file_size: size, mtime_ns: st.mtimeNs.toString(), inode: `${st.dev}:${st.ino}`, sample_sha256: await sampleHash(path, size) };
}

/** Throws ConfigError unless `disk` still is the image `saved` describes (or `force`). */
export async function checkDiskIdentity(disk: DiskConfig, saved: DiskIdentity, force: boolean): Promise<void> {
  if (force) return;
  const changed = (why: string): never => {
    throw new ConfigError(
      `disk "${disk.id}" (${disk.path}) is not the image the snapshot was taken with: ${why}; restoring memory over it would corrupt the guest's filesystem (restore with force=on to do it anyway)`,
    );
  };
  let st;
  try {
    st = await stat(disk.path, { bigint: true });
  } catch (e) {
    throw new ConfigError(`disk "${disk.id}": cannot read ${disk.path}: ${(e as Error).message}`);
  }
  if (Number(st.size) !== saved.file_size) changed(`its size is ${st.size} bytes, was ${saved.file_size}`);
  if (disk.path === saved.path) {
    // The same file, untouched since: no need to read it (this keeps restore fast).
    if (`${st.dev}:${st.ino}` !== saved.inode) changed('the file was replaced (different inode)');
    if (st.mtimeNs.toString() !== saved.mtime_ns) changed('it was written after the snapshot');
    return;
  }
  // A copy (a clone's own disk): compare content samples.
  if ((await sampleHash(disk.path, Number(st.size))) !== saved.sample_sha256) changed('its content differs');
}
