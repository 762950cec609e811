/**
 * L1/L2 table entries (64-bit big-endian). Offsets use bits 9–55; bit 63 is COPIED (refcount is
 * exactly one), bit 62 marks a compressed cluster, bit 0 of a standard L2 entry reads as zeros (v3).
 */
export const OFFSET_MASK = 0x00fffffffffffe00n;
export const FLAG_COPIED = 1n << 63n;
export const FLAG_COMPRESSED = 1n << 62n;
export const FLAG_ZERO = 1n;

export type ClusterMapping =
  | { kind: 'unallocated' }
  /** Reads as zeros; `hostOffset` is a preallocated cluster (0 when none). */
  | { kind: 'zero'; hostOffset: number; copied: boolean }
  | { kind: 'data'; hostOffset: number; copied: boolean }
  /** Deflate data at `hostOffset` spanning at most `maxBytes` bytes. */
  | { kind: 'compressed'; hostOffset: number; maxBytes: number };

export function getEntry(table: Uint8Array, index: number): bigint {
  return new DataView(table.buffer, table.byteOffset, table.byteLength).getBigUint64(index * 8, false);
}

export function setEntry(table: Uint8Array, index: number, value: bigint): void {
  new DataView(table.buffer, table.byteOffset, table.byteLength).setBigUint64(index * 8, value, false);
}

export function l1Offset(entry: bigint): number {
  return Number(entry & OFFSET_MASK);
}

export function decodeL2(entry: bigint, clusterBits: number, version: number): ClusterMapping {
  if (entry & FLAG_COMPRESSED) {
    // Compressed descriptor: x = 62 - (cluster_bits - 8) offset bits, then additional sector count.
    const x = BigInt(62 - (clusterBits - 8));
    const hostOffset = Number(entry & ((1n << x) - 1n));
    const sectors = Number((entry >> x) & ((1n << (62n - x)) - 1n)) + 1;
    return { kind: 'compressed', hostOffset, maxBytes: sectors * 512 - (hostOffset % 512) };
  }
  const hostOffset = Number(entry & OFFSET_MASK);
  const copied = (entry & FLAG_COPIED) !== 0n;
  if (version >= 3 && entry & FLAG_ZERO) return { kind: 'zero', hostOffset, copied };
  if (hostOffset === 0) return { kind: 'unallocated' };
  return { kind: 'data', hostOffset, copied };
}

export function dataEntry(hostOffset: number, copied: boolean): bigint {
  return BigInt(hostOffset) | (copied ? FLAG_COPIED : 0n);
}

/**
 * The L2 entry of a compressed cluster whose `length` deflate bytes start at host byte `hostOffset`:
 * the offset in the low x = 62 - (cluster_bits - 8) bits, then the count of 512-byte sectors the
 * data covers beyond the one holding its first byte.
 */
export function compressedEntry(hostOffset: number, length: number, clusterBits: number): bigint {
  const x = BigInt(62 - (clusterBits - 8));
  const extraSectors = Math.floor((hostOffset + length - 1) / 512) - Math.floor(hostOffset / 512);
  if (BigInt(hostOffset) >= 1n << x || BigInt(extraSectors) >= 1n << (62n - x)) {
    throw new RangeError(`compressed cluster at ${hostOffset} (+${length}) does not fit an L2 entry`);
  }
  return FLAG_COMPRESSED | (BigInt(extraSectors) << x) | BigInt(hostOffset);
}

/** Host clusters a compressed cluster's bytes touch (each holds one reference for it). */
export function compressedHostClusters(m: { hostOffset: number; maxBytes: number }, clusterBits: number): number[] {
  const first = Math.floor(m.hostOffset / 2 ** clusterBits);
  const last = Math.floor((m.hostOffset + m.maxBytes - 1) / 2 ** clusterBits);
  const out: number[] = [];
  for (let c = first; c <= last; c++) out.push(c);
  return out;
}
