import { realpath } from 'node:fs/promises';
import type { BlockBackend } from '../block/backend.js';
import { Qcow2Image } from '../block/qcow2/image.js';
import { openImage } from '../block/open.js';
import { RawBackend } from '../block/raw.js';
import { ConfigError } from '../errors.js';
import { forEachExtent, layersOf } from '../block/chain/walk.js';
import { withWriteLock } from './lock.js';
import { Progress } from './progress.js';
import { WriteBehind } from './write-behind.js';

const CHUNK = 16 * 1024 * 1024;

export interface CommitRequest {
  file: string;
  base: string | null;
  /** Keep the top image's content (-d). */
  keepTop: boolean;
  progress: boolean;
}

/**
 * Copies everything the layers above BASE hold into BASE (default: the top's backing file), base
 * made durable first; then, unless -d or an explicit -b (as qemu-img: the top is emptied only when
 * the base was implied), empties the top so it reads through to the base again.
 */
export async function commitImage(req: CommitRequest): Promise<void> {
  const top = await openImage(req.file, { readOnly: false });
  if (!(top instanceof Qcow2Image) || top.backing === null) {
    await top.close();
    throw new ConfigError(`${req.file}: has no backing file to commit into`);
  }
  try {
    const below = layersOf(top).slice(1).map((l) => ({ path: l.path, format: l.format }));
    let depth = 1;
    if (req.base !== null) {
      const wanted = await realpath(req.base).catch(() => {
        throw new ConfigError(`cannot open ${req.base}: no such file`);
      });
      const found = [];
      for (const b of below) found.push(await realpath(b.path));
      depth = found.indexOf(wanted) + 1;
      if (depth === 0) throw new ConfigError(`${req.base} is not in the backing chain of ${req.file}`);
    }
    const target = below[depth - 1]!;
    const progress = new Progress(req.progress);
    // The base is written too: it gets the same write lock as the top.
    await withWriteLock(target.path, () => copyIntoBase(top, target, depth, progress));
    // Only after the base is durable may the top stop holding the data.
    if (!req.keepTop && req.base === null) await top.lock.exclusive(() => top.zeroUnlocked(0, top.size, 'unallocate'));
    progress.finish();
  } finally {
    await top.close();
  }
}

/** Writes every extent that a layer above `depth` provides into the base, then makes it durable. */
async function copyIntoBase(top: Qcow2Image, target: { path: string; format: string }, depth: number, progress: Progress): Promise<void> {
  const base: BlockBackend = target.format === 'raw'
    ? await RawBackend.open(target.path, { readOnly: false })
    : await openImage(target.path, { readOnly: false, format: 'qcow2' });
  try {
    if (layersOf(top).length <= depth) throw new ConfigError('backing chain changed while committing');
    const copier = new WriteBehind(CHUNK);
    await forEachExtent(top, CHUNK, async (e) => {
      progress.update(e.start, top.size);
      if (e.depth >= depth || !e.present) return;
      const end = Math.min(e.start + e.length, base.size);
      if (e.start >= end) return;
      if (e.zero) return copier.submit(() => base.writeZeroes(e.start, end - e.start, false));
      const part = copier.buffer(end - e.start);
      await top.read(e.start, part);
      await copier.submit(() => base.write(e.start, part));
    });
    await copier.drain();
    await base.flush();
  } finally {
    await base.close();
  }
}
