/**
 * Live external disk snapshot: the disk's current image becomes a read-only backing file and the
 * guest continues on a new qcow2 overlay above it. The overlay is created before guest I/O is
 * held (it does not depend on the disk's content); only flush, open and switch happen while the
 * guest's requests wait, so the guest-visible pause is a few milliseconds.
 */
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { openImage } from '../../devices/block/qcow2/open.js';
import { ConfigError } from '../../errors.js';
import { CheckpointError } from './errors.js';
import { createOverlay, lockedHandle } from './overlay.js';
/** Puts `disk` on a new overlay at `file` (absolute path, must not exist). */
export async function snapshotDiskLive(disk, file) {
    if (disk.config.readonly)
        throw new ConfigError(`disk "${disk.config.id}" is read-only: it never changes, so it needs no snapshot`);
    const overlay = resolve(file);
    const frozen = resolve(disk.config.path);
    const frozenFormat = disk.backend.format;
    await createOverlay(overlay, frozen, frozenFormat, disk.backend.size);
    let swapped;
    try {
        swapped = await disk.swapBackend(async (current) => {
            // Everything the guest wrote so far must be in the frozen image before it is frozen.
            await current.flush();
            const lock = await lockedHandle(overlay, 'write');
            try {
                const backend = await openImage(overlay, { readOnly: false, format: 'qcow2' });
                return { backend, lockHandle: lock, path: overlay, format: 'qcow2' };
            }
            catch (e) {
                await lock.close();
                throw e;
            }
        });
    }
    catch (e) {
        await rm(overlay, { force: true });
        throw new CheckpointError(`disk "${disk.config.id}": could not switch to overlay ${overlay}: ${e.message}; the guest continues on ${frozen}`);
    }
    // The old image is now only read (through the overlay's own read-only open of the chain): its
    // write lock becomes a read lock, which also keeps qemu-img and other VMs from writing it.
    if (swapped.previousLock !== null)
        await disk.holdBackingLock(frozen, swapped.previousLock);
    await swapped.previous.close();
    return { disk: disk.config.id, frozen, frozen_format: frozenFormat, overlay, io_pause_ms: swapped.heldMs };
}
//# sourceMappingURL=external.js.map