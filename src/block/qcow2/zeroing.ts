import { FLAG_ZERO, setEntry } from './entries.js';
import type { ClusterIo } from './clusters.js';
import type { Qcow2Metadata } from './metadata.js';

export type ZeroMode = 'zero' | 'zero-unmap' | 'discard' | 'unallocate';

/**
 * Whole clusters become zero clusters (v3) or unallocated (no backing file, or a discard); the
 * partial clusters at either end of a zeroing request get explicit zeros. 'unallocate' makes whole
 * clusters read through to the backing file again (commit empties an overlay this way).
 * The caller holds the image's exclusive lock.
 */
export async function zeroRange(image: Qcow2Metadata, io: ClusterIo, offset: number, length: number, how: ZeroMode): Promise<void> {
  await image.beforeFirstWrite();
  const cs = image.clusterSize;
  const end = offset + length;
  // The last cluster counts as whole when the request runs to the end of the disk.
  const lastWhole = end === image.size ? Math.ceil(end / cs) * cs : Math.floor(end / cs) * cs;
  const firstWhole = Math.ceil(offset / cs) * cs;
  if (how === 'unallocate') return setWholeClusters(image, firstWhole / cs, lastWhole / cs, 0n);
  if (firstWhole >= lastWhole) {
    if (how !== 'discard') await io.writeUnlocked(offset, new Uint8Array(length));
    return;
  }
  if (how !== 'discard' && offset < firstWhole) await io.writeUnlocked(offset, new Uint8Array(firstWhole - offset));
  if (how !== 'discard' && lastWhole < end) await io.writeUnlocked(lastWhole, new Uint8Array(end - lastWhole));
  const canDrop = io.backingImage === null;
  const useFlag = image.header.version === 3;
  if (!canDrop && !useFlag) {
    // v2 with a backing file has no zero flag: only real zeros hide the backing data.
    if (how === 'discard') return;
    const stop = Math.min(lastWhole, end);
    for (let at = firstWhole; at < stop; at += 64 * cs) await io.writeUnlocked(at, new Uint8Array(Math.min(64 * cs, stop - at)));
    return;
  }
  await setWholeClusters(image, firstWhole / cs, lastWhole / cs, canDrop && (how !== 'zero' || !useFlag) ? 0n : FLAG_ZERO);
}

/**
 * Sets the L2 entry of clusters [first, end) to `entry` (0 or the zero flag), freeing what they
 * used. The entries change in the image's metadata cache; the clusters' references are dropped at
 * the next write-back, after the tables that no longer name them are durable.
 */
async function setWholeClusters(image: Qcow2Metadata, first: number, end: number, entry: bigint): Promise<void> {
  for (let c = first; c < end; c++) {
    const m = await image.lookup(c);
    if (entry === 0n && m.kind === 'unallocated') continue;
    if (entry === FLAG_ZERO && m.kind === 'zero' && m.hostOffset === 0) continue;
    const decrements: number[] = [];
    const { table, index, offset: l2 } = await image.ownedL2(c, decrements);
    setEntry(table, index, entry);
    image.markL2Dirty(l2);
    decrements.push(...image.releasedClusters(m));
    await image.release(decrements);
    await image.limitDirtyMetadata();
  }
}
