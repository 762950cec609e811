import { BlockError } from '../backend.js';
import { HDR_SIZE, L1_MAX_ENTRIES } from './format.js';
import type { Qcow2Metadata } from './metadata.js';

/**
 * Grows the virtual disk to `newSize` bytes (the new part reads as zeros). When the L1 table
 * must grow it moves to new clusters: the new table and its refcounts are made durable, then one
 * header write switches size, L1 size and L1 offset together, then the old table is released.
 * A crash at any point leaves the old or the new image, at worst with leaked clusters.
 */
export async function grow(meta: Qcow2Metadata, newSize: number): Promise<void> {
  meta.checkWritable();
  if (!Number.isSafeInteger(newSize) || newSize % 512 !== 0) throw new BlockError(`${meta.path}: the new size ${newSize} is not a multiple of 512 bytes`);
  if (newSize < meta.size) throw new BlockError(`${meta.path}: ${newSize} bytes is smaller than the image (${meta.size}); growing only`);
  if (newSize === meta.size) return;
  await meta.lock.exclusive(async () => {
    await meta.beforeFirstWrite();
    await meta.barrier();
    const header = new Uint8Array(24); // size u64, crypt_method u32, l1_size u32, l1_table_offset u64
    const view = new DataView(header.buffer);
    const neededL1 = Math.ceil(newSize / (meta.clusterSize * meta.l2Entries));
    const oldL1 = { offset: meta.header.l1TableOffset, clusters: Math.ceil((meta.header.l1Size * 8) / meta.clusterSize) };
    let l1 = meta.l1;
    let l1Offset = meta.header.l1TableOffset;
    if (neededL1 > meta.header.l1Size) {
      if (neededL1 > L1_MAX_ENTRIES) throw new BlockError(`${meta.path}: ${newSize} bytes needs ${neededL1} L1 entries, more than qcow2 allows (${L1_MAX_ENTRIES})`);
      const clusters = Math.ceil((neededL1 * 8) / meta.clusterSize);
      l1Offset = await meta.refcounts.allocate(clusters);
      const table = new Uint8Array(clusters * meta.clusterSize);
      table.set(meta.l1);
      await meta.file.writeAt(l1Offset, table);
      l1 = table.subarray(0, neededL1 * 8);
      await meta.barrier(); // the new table and its refcounts before the header names them
    }
    view.setBigUint64(0, BigInt(newSize), false);
    view.setUint32(8, meta.header.cryptMethod, false);
    view.setUint32(12, Math.max(neededL1, meta.header.l1Size), false);
    view.setBigUint64(16, BigInt(l1Offset), false);
    await meta.file.writeAt(HDR_SIZE, header);
    await meta.sync();
    const moved = l1Offset !== meta.header.l1TableOffset;
    meta.header.size = newSize;
    // Unchanged when the table did not move; else exactly neededL1 entries, more than before.
    meta.replaceL1(l1, l1Offset);
    if (moved && oldL1.offset !== 0) {
      for (let c = 0; c < oldL1.clusters; c++) await meta.release([oldL1.offset / meta.clusterSize + c]);
      await meta.barrier();
    }
  });
}
