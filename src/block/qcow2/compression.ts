import { deflateRawSync } from 'node:zlib';
import { BlockError } from '../backend.js';
import { compressedEntry, decodeL2, getEntry, setEntry } from './entries.js';
import type { Qcow2Metadata } from './metadata.js';

/**
 * Stores the guest cluster at `offset` (cluster-aligned, not yet allocated; `data` is the
 * cluster, shorter only at the end of the disk) as raw deflate with a 4 KiB window, which is
 * what QEMU writes and reads, packed byte by byte after the previous compressed cluster as
 * QEMU packs them. Returns false, having written it the normal way, when compression would not
 * save at least one 512-byte sector.
 */
export async function writeCompressed(meta: Qcow2Metadata, write: (offset: number, data: Uint8Array) => Promise<void>, offset: number, data: Uint8Array): Promise<boolean> {
  meta.checkWritable();
  const cs = meta.clusterSize;
  if (offset % cs !== 0 || data.byteLength !== Math.min(cs, meta.size - offset)) {
    throw new BlockError(`${meta.path}: a compressed write covers exactly one cluster (offset ${offset}, ${data.byteLength} bytes)`);
  }
  let cluster = data;
  if (data.byteLength < cs) {
    cluster = new Uint8Array(cs);
    cluster.set(data);
  }
  const packed = deflateRawSync(cluster, { windowBits: 12 });
  if (packed.byteLength > cs - 512) {
    await write(offset, data);
    return false;
  }
  await meta.lock.exclusive(async () => {
    await meta.beforeFirstWrite();
    const decrements: number[] = [];
    const { table, index, offset: l2 } = await meta.ownedL2(offset / cs, decrements);
    if (decodeL2(getEntry(table, index), meta.header.clusterBits, meta.header.version).kind !== 'unallocated') {
      throw new BlockError(`${meta.path}: compressed writes go to unallocated clusters only (guest offset ${offset})`);
    }
    const host = await meta.allocateCompressedBytes(packed.byteLength);
    await meta.file.writeAt(host, packed);
    setEntry(table, index, compressedEntry(host, packed.byteLength, meta.header.clusterBits));
    meta.markL2Dirty(l2);
    await meta.release(decrements);
    await meta.limitDirtyMetadata();
  });
  return true;
}
