/**
 * Live external disk snapshot: the disk's current image becomes a read-only backing file and the
 * guest continues on a new qcow2 overlay above it. The overlay is created before guest I/O is
 * held (it does not depend on the disk's content); only flush, open and switch happen while the
 * guest's requests wait, so the guest-visible pause is a few milliseconds.
 */
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { FileHandle } from 'node:fs/promises';
import { Qcow2Image } from '../../block/qcow2/image.js';
import type { ImageFormat } from '../../block/backend.js';
import { openImage } from '../../block/open.js';
import { ConfigError } from '../../errors.js';
import type { Disk } from '../disks.js';
import { CheckpointError } from './errors.js';
import { createOverlay } from '../../block/chain/overlay.js';
import { lockedHandle } from '../../block/chain/lock.js';

/**
 * The frozen image must be durable before the guest's next flush can complete, so it is flushed
 * inside the hold too; flushing first while the guest runs leaves that one only what the guest
 * wrote during the last round. A guest streaming writes faster than the host disk absorbs them
 * still sees a hold as long as one flush of what it wrote meanwhile (QEMU flushes the same way).
 */
const PRE_FLUSH_ROUNDS = 4;
const QUICK_FLUSH_MS = 5;

export interface DiskSnapshotResult {
  disk: string;
  /** The image that is now frozen (read-only, the overlay's backing file). */
  frozen: string;
  frozen_format: string;
  overlay: string;
  /** How long guest I/O on this disk was held (drain, flush, open, switch), in ms. */
  io_pause_ms: number;
}

/** Puts `disk` on a new overlay at `file` (absolute path, must not exist). */
export async function snapshotDiskLive(disk: Disk, file: string): Promise<DiskSnapshotResult> {
  if (disk.config.readonly) throw new ConfigError(`disk "${disk.config.id}" is read-only: it never changes, so it needs no snapshot`);
  const overlay = resolve(file);
  const frozen = resolve(disk.path);
  const frozenFormat = disk.backend.format;
  await createOverlay(overlay, frozen, frozenFormat, disk.backend.size);
  // Work that does not depend on the disk's content happens while the guest still runs: most of
  // the flush, the overlay's lock and open (without its backing chain, which must be opened only
  // once nothing changes it any more).
  let lock: FileHandle | undefined;
  let top: Qcow2Image | undefined;
  let swapped;
  try {
    await preFlush(disk);
    lock = await lockedHandle(overlay, 'write');
    top = await Qcow2Image.open(overlay, { readOnly: false });
    const ready = top;
    const readyLock = lock;
    swapped = await disk.swapBackend(async (current) => {
      // Everything the guest wrote so far must be in the frozen image before it is frozen.
      await current.flush();
      ready.backing = await openImage(frozen, { readOnly: true, format: frozenFormat as ImageFormat });
      return { backend: ready, lockHandle: readyLock, path: overlay, format: 'qcow2' as const };
    });
  } catch (e) {
    await top?.close();
    await lock?.close();
    await rm(overlay, { force: true });
    throw new CheckpointError(`disk "${disk.config.id}": could not switch to overlay ${overlay}: ${(e as Error).message}; the guest continues on ${frozen}`);
  }
  // The old image is now only read (through the overlay's own read-only open of the chain): its
  // write lock becomes a read lock, which also keeps qemu-img and other VMs from writing it.
  if (swapped.previousLock !== null) await disk.holdBackingLock(frozen, swapped.previousLock);
  await swapped.previous.close();
  return { disk: disk.config.id, frozen, frozen_format: frozenFormat, overlay, io_pause_ms: swapped.heldMs };
}

/** Flushes before the hold, again while the guest wrote a lot meanwhile (a few rounds at most). */
async function preFlush(disk: Disk): Promise<void> {
  for (let round = 0; round < PRE_FLUSH_ROUNDS; round++) {
    const start = performance.now();
    await disk.backend.flush();
    if (performance.now() - start < QUICK_FLUSH_MS) return;
  }
}
