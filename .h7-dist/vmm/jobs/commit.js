import { Qcow2Image } from '../../devices/block/qcow2/image.js';
import { openImage } from '../../devices/block/qcow2/open.js';
import { RawBackend } from '../../devices/block/raw.js';
import { chainStatus, layersOf } from '../../img/chain.js';
import { lockedHandle } from '../checkpoints/overlay.js';
import { pathOf, swapBacking, writeBackingName, MERGE_CHUNK } from '../checkpoints/merge.js';
import { DirtyTracker } from './dirty-tracker.js';
/** Pivot once at most this many clusters are left to copy (they are copied with I/O held). */
const PIVOT_CLUSTERS = 64;
const MAX_DIRTY_PASSES = 32;
async function openBaseWritable(base) {
    return openImage(pathOf(base), { readOnly: false, format: base.format });
}
/** Bytes copied between cancellation checks and rate-limit sleeps. */
const COPY_PIECE = 1024 * 1024;
/** Copies every byte that layers above base provide into `target`, reading the visible content of `top`. */
async function copyAbove(job, top, baseDepth, target) {
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
                }
                else {
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
async function copyClusters(top, clusters, clusterSize, target, job) {
    const buffer = new Uint8Array(clusterSize);
    for (const c of clusters) {
        const offset = c * clusterSize;
        const part = buffer.subarray(0, Math.min(clusterSize, top.size - offset));
        if (part.byteLength <= 0)
            continue;
        await top.read(offset, part);
        await target.write(offset, part);
        if (job !== null)
            await job.copiedBytes(part.byteLength);
    }
}
export async function runCommit(job, plan) {
    return plan.parent === null ? activeCommit(job, plan) : intermediateCommit(job, plan);
}
async function activeCommit(job, plan) {
    const { disk, top, base } = plan;
    const basePath = pathOf(base);
    const dropped = layersOf(top).slice(1, plan.baseDepth).map(pathOf);
    const clusterSize = top instanceof Qcow2Image ? top.clusterSize : 65536;
    const baseW = await openBaseWritable(base);
    const tracker = new DirtyTracker(top, clusterSize);
    let pivoted = false;
    try {
        await disk.swapBackend(async () => ({ backend: tracker, path: pathOf(top), format: top.format }));
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
            return { backend: baseW, lockHandle: plan.baseLock, path: basePath, format: baseW.format };
        });
        pivoted = true;
        job.info.pivot_pause_ms = swap.heldMs;
        await swap.previous.close();
        await swap.previousLock?.close();
        for (const p of dropped)
            await disk.releaseBackingLock(p);
    }
    finally {
        if (!pivoted) {
            // Cancelled or failed: the guest goes back to the plain top image; base keeps what was
            // copied (the top still masks it, so nothing the guest sees changed).
            if (disk.backend === tracker)
                await disk.swapBackend(async () => ({ backend: top, path: pathOf(top), format: top.format }));
            await baseW.close();
            await plan.baseLock.close();
            await disk.holdBackingLock(basePath, await lockedHandle(basePath, 'read'));
        }
    }
}
async function intermediateCommit(job, plan) {
    const { disk, top, base, parent } = plan;
    const basePath = pathOf(base);
    const dropped = layersOf(top).slice(0, plan.baseDepth).map(pathOf);
    const below = base instanceof Qcow2Image ? base.backing : null;
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
        const active = parent;
        if (!active.readOnly) {
            await writeBackingName(active, basePath, base.format);
        }
        else {
            const w = await Qcow2Image.open(active.path, { readOnly: false });
            try {
                await writeBackingName(w, basePath, base.format);
            }
            finally {
                await w.close();
            }
        }
        // A fresh read-only open of base: the old one cached metadata from before the copy.
        const fresh = base instanceof Qcow2Image
            ? await Qcow2Image.open(basePath, { readOnly: true, openBacking: async () => below })
            : await RawBackend.open(basePath, { readOnly: true });
        await swapBacking(active, fresh, below);
        for (const p of dropped)
            await disk.releaseBackingLock(p);
    }
    finally {
        if (!baseClosed)
            await baseW.close();
        await plan.baseLock.close();
        await disk.holdBackingLock(basePath, await lockedHandle(basePath, 'read'));
    }
}
//# sourceMappingURL=commit.js.map