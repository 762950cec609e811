/**
 * block-commit: merges `top` (and any layers between it and `base`) down into `base` while the
 * guest runs.
 *
 * Active commit (top is the image the guest writes): the device is put on a DirtyTracker around
 * the top, every cluster the top..base-exclusive layers provide is copied into `base` (through a
 * writable open of it), then clusters the guest rewrote meanwhile are copied again, in passes,
 * until few remain; the last ones are copied while guest I/O is held, and the guest is pivoted
 * onto `base` in the same hold. A guest write is therefore either copied after it completed or
 * made directly to `base`: none is lost or overwritten by older data.
 *
 * Intermediate commit (top is frozen): its clusters are copied into `base`, the image above `top`
 * is rewritten to name `base` as its backing file, and the live chain drops top..base-exclusive.
 */
import type { FileHandle } from 'node:fs/promises';
import type { BlockBackend } from '../../block/backend.js';
import { Qcow2Image } from '../../block/qcow2/image.js';
import type { ImageFormat } from '../../block/backend.js';
import { openImage } from '../../block/open.js';
import { RawBackend } from '../../block/raw.js';
import type { Disk } from '../disks.js';
import { lockedHandle } from '../../block/chain/lock.js';
import { MERGE_CHUNK, swapBacking, writeBackingName } from '../../block/chain/merge.js';
import { chainStatus, layersOf, pathOf } from '../../block/chain/walk.js';
import { DirtyTracker } from './dirty-tracker.js';
import type { BlockJob } from './job.js';

/** Pivot once at most this many clusters are left to copy (they are copied with I/O held). */
const PIVOT_CLUSTERS = 64;
const MAX_DIRTY_PASSES = 32;

export interface CommitPlan {
  disk: Disk;
  /** The top image's instance in the live chain, and the one above it (null: top is active). */
  top: BlockBackend;
  parent: Qcow2Image | null;
  base: BlockBackend;
  /** Index of `base` in layersOf(top). */
  baseDepth: number;
  /** The write lock on base, taken by the manager before the job starts. */
  baseLock: FileHandle;
}

async function openBaseWritable(base: BlockBackend): Promise<BlockBackend> {
  return openImage(pathOf(base), { readOnly: false, format: base.format as ImageFormat });
}

/** Bytes copied between cancellation checks and rate-limit sleeps. */
const COPY_PIECE = 1024 * 1024;

/** Copies every byte that layers above base provide into `target`, reading the visible content of `top`. */
async function copyAbove(job: BlockJob, top: BlockBackend, baseDepth: number, target: BlockBackend): Promise<void> {
  const buffer = new Uint8Array(COPY_PIECE);
  const total = top.size;
  for (let at = 0; at < total;) {
    job.checkCancelled();
    const e = await chainStatus(top, at, MERGE_CHUNK);
    if (e.present && e.depth < baseDepth) {
      for (let from = e.start; from < e.start + e.length; from += COPY_PIECE) {
        job.checkCancelled();
        const n = Math.min(COPY_PIECE, e.start + e.length - from);
        if (e.zero) {
          await target.writeZeroes(from, n, false);
        } else {
          const part = buffer.subarray(0, n);
          await top.read(from, part);
          await target.write(from, part);
        }
        await job.copiedBytes(n);
        job.progress(from + n, total);
      }
    }
    at += e.length;
    job.progress(at, total);
  }
}

async function copyClusters(top: BlockBackend, clusters: number[], clusterSize: number, target: BlockBackend, job: BlockJob | null): Promise<void> {
  const buffer = new Uint8Array(clusterSize);
  for (const c of clusters) {
    const offset = c * clusterSize;
    const part = buffer.subarray(0, Math.min(clusterSize, top.size - offset));
    if (part.byteLength <= 0) continue;
    await top.read(offset, part);
    await target.write(offset, part);
    if (job !== null) await job.copiedBytes(part.byteLength);
  }
}

export async function runCommit(job: BlockJob, plan: CommitPlan): Promise<void> {
  return plan.parent === null ? activeCommit(job, plan) : intermediateCommit(job, plan);
}

async function activeCommit(job: BlockJob, plan: CommitPlan): Promise<void> {
  const { disk, top, base } = plan;
  const basePath = pathOf(base);
  const dropped = layersOf(top).slice(1, plan.baseDepth).map(pathOf);
  const clusterSize = top instanceof Qcow2Image ? top.clusterSize : 65536;
  const baseW = await openBaseWritable(base);
  const tracker = new DirtyTracker(top, clusterSize);
  let pivoted = false;
  try {
    await disk.swapBackend(async () => ({ backend: tracker, path: pathOf(top), format: top.format as 'qcow2' }));
    await copyAbove(job, top, plan.baseDepth, baseW);
    for (let pass = 0; pass < MAX_DIRTY_PASSES && tracker.dirtyCount > PIVOT_CLUSTERS; pass++) {
      job.checkCancelled();
      await copyClusters(top, tracker.take(), clusterSize, baseW, job);
    }
    job.checkCancelled();
    // Make the bulk durable while the guest runs; the flush in the hold covers only the last copies.
    await baseW.flush();
    job.info.state = 'pivoting';
    const swap = await disk.swapBackend(async () => {
      // Guest I/O is held: what is dirty now is all that is left, and nothing new can appear.
      await copyClusters(top, tracker.take(), clusterSize, baseW, null);
      await baseW.flush();
      return { backend: baseW, lockHandle: plan.baseLock, path: basePath, format: baseW.format as 'raw' | 'qcow2' };
    });
    pivoted = true;
    job.info.pivot_pause_ms = swap.heldMs;
    await swap.previous.close();
    await swap.previousLock?.close();
    for (const p of dropped) await disk.releaseBackingLock(p);
  } finally {
    if (!pivoted) {
      // Cancelled or failed: the guest goes back to the plain top image; base keeps what was
      // copied (the top still masks it, so nothing the guest sees changed).
      if (disk.backend === tracker) await disk.swapBackend(async () => ({ backend: top, path: pathOf(top), format: top.format as 'qcow2' }));
      await baseW.close();
      await plan.baseLock.close();
      await disk.holdBackingLock(basePath, await lockedHandle(basePath, 'read'));
    }
  }
}

async function intermediateCommit(job: BlockJob, plan: CommitPlan): Promise<void> {
  const { disk, top, base, parent } = plan;
  const basePath = pathOf(base);
  const dropped = layersOf(top).slice(0, plan.baseDepth).map(pathOf);
  const below = base.backing;
  const baseW = await openBaseWritable(base);
  let baseClosed = false;
  try {
    await copyAbove(job, top, plan.baseDepth, baseW);
    job.checkCancelled();
    await baseW.flush();
    await baseW.close();
    baseClosed = true;
    // The image above `top` now names `base`; it is rewritten through a writable open when the
    // guest only reads it, and directly when it is the guest's active image.
    const active = parent!;
    if (!active.readOnly) {
      await writeBackingName(active, basePath, base.format);
    } else {
      const w = await Qcow2Image.open(active.path, { readOnly: false });
      try {
        await writeBackingName(w, basePath, base.format);
      } finally {
        await w.close();
      }
    }
    // A fresh read-only open of base: the old one cached metadata from before the copy.
    const fresh: BlockBackend = base instanceof Qcow2Image
      ? await Qcow2Image.open(basePath, { readOnly: true, openBacking: async () => below! })
      : await RawBackend.open(basePath, { readOnly: true });
    await swapBacking(active, fresh, below);
    for (const p of dropped) await disk.releaseBackingLock(p);
  } finally {
    if (!baseClosed) await baseW.close();
    await plan.baseLock.close();
    await disk.holdBackingLock(basePath, await lockedHandle(basePath, 'read'));
  }
}
