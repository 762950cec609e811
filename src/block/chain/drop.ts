/**
 * Removing one layer from a disk chain without changing what any remaining image shows: the
 * dropped layer's data is copied up into its child, the child is pointed at the dropped layer's
 * backing file, and the layer is closed (the caller deletes its file). Works on a chain a running
 * guest uses (active child or a frozen one) and on images no VM has open.
 */
import { open as openFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { BlockError, type BlockBackend } from '../backend.js';
import { openImage } from '../open.js';
import { parseHeader, peekClusterBits, QCOW2_MAGIC } from '../qcow2/format.js';
import { Qcow2Image, resolveBackingPath } from '../qcow2/image.js';
import { copyUp, swapBacking, writeBackingName, type MergeControl } from './merge.js';
import { findLayer, pathOf } from './walk.js';

/** The backing file a qcow2 image names (resolved), or null (raw image or no backing). */
export async function readBackingOf(path: string): Promise<string | null> {
  const h = await openFile(path, 'r');
  try {
    const first = Buffer.alloc(512);
    await h.read(first, 0, 512, 0);
    if (first.readUInt32BE(0) !== QCOW2_MAGIC) return null;
    const cluster = Buffer.alloc(2 ** peekClusterBits(first));
    await h.read(cluster, 0, cluster.length, 0);
    const header = parseHeader(cluster);
    return header.backingFile === null ? null : resolveBackingPath(path, header.backingFile);
  } finally {
    await h.close();
  }
}

/**
 * Drops the layer stored in `droppedPath` from below the image in `childPath`. `liveTop` is the
 * running disk's top image when a VM uses the chain (its instances are edited in place). Returns
 * false when `control` cancelled the copy (the chain is then unchanged).
 */
export async function dropLayer(childPath: string, droppedPath: string, liveTop: BlockBackend | null, control: MergeControl = {}): Promise<boolean> {
  const live = liveTop === null ? null : findLayer(liveTop, childPath);
  if (live !== null && live.layer instanceof Qcow2Image && live.parent === null) {
    // The child is the guest's active image: copy up under its lock, beside the guest's writes.
    const child = live.layer;
    const keep = checkDropped(child, droppedPath).backing;
    if (!(await copyUp(child, keep, control))) return false;
    await writeBackingName(child, keep === null ? null : pathOf(keep), keep?.format ?? null);
    await swapBacking(child, keep, keep);
    return true;
  }
  if (live !== null && live.layer instanceof Qcow2Image && live.parent instanceof Qcow2Image) {
    // A frozen (read-only) child inside a live chain: copy up through a second, writable open
    // that shares the layers below, then put a fresh read-only open in the chain in its place.
    const childRo = live.layer;
    const dropped = checkDropped(childRo, droppedPath);
    const keep = dropped.backing;
    const writer = await Qcow2Image.open(childPath, { readOnly: false, openBacking: async () => dropped });
    try {
      if (!(await copyUp(writer, keep, control))) return false;
      await writeBackingName(writer, keep === null ? null : pathOf(keep), keep?.format ?? null);
    } finally {
      writer.backing = null;
      await writer.close();
    }
    const fresh = await Qcow2Image.open(childPath, { readOnly: true, openBacking: async () => keep! });
    await swapBacking(live.parent, fresh, keep);
    return true;
  }
  const child = await openImage(childPath, { readOnly: false, format: 'qcow2' });
  try {
    if (!(child instanceof Qcow2Image)) throw new BlockError(`${childPath} is not a qcow2 image`);
    const keep = checkDropped(child, droppedPath).backing;
    if (!(await copyUp(child, keep, control))) return false;
    await writeBackingName(child, keep === null ? null : pathOf(keep), keep?.format ?? null);
    await swapBacking(child, keep, keep);
    return true;
  } finally {
    await child.close();
  }
}

function checkDropped(child: Qcow2Image, droppedPath: string): Qcow2Image {
  const dropped = child.backing;
  if (dropped === null || pathOf(dropped) !== resolve(droppedPath)) {
    throw new BlockError(`${droppedPath} is not the backing file of ${child.path}`);
  }
  if (!(dropped instanceof Qcow2Image)) throw new BlockError(`${droppedPath} is a raw image: it is the base of the chain and has nothing below it to merge onto`);
  return dropped;
}
