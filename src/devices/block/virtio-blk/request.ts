/**
 * virtio-blk request parsing (virtio 1.x §5.2.6): a chain's header and data descriptors (the
 * status descriptor already taken off) become one request of a tagged union, validated in full
 * before any I/O, so a malformed request completes with IOERR/UNSUPP and never reaches the disk.
 */
import type { GuestMemory } from '../../../memory/guest-memory.js';
import type { Descriptor } from '../../virtio/chain.js';
import { bit } from '../../virtio/device.js';
import {
  DISCARD_SEGMENT_SIZE, MAX_DISCARD_SECTORS, MAX_DISCARD_SEG, REQUEST_HEADER_SIZE, SECTOR_SIZE, VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
} from './spec.js';

/** One range of a discard or write-zeroes request, in bytes. */
export interface BlkRange {
  offset: number;
  length: number;
  unmap: boolean;
}

export type BlkRequest =
  /** Completes at once with this status (malformed or unsupported). */
  | { kind: 'refused'; status: number }
  /** Guest buffers are sliced when the read runs: a buffer outside RAM fails the request, not the device. */
  | { kind: 'read'; offset: number; total: number; buffers: Descriptor[] }
  | { kind: 'write'; offset: number; total: number; parts: Uint8Array[] }
  | { kind: 'flush' }
  /** The serial already went into the guest's buffers (`written` bytes of them). */
  | { kind: 'get-id'; written: number }
  | { kind: 'discard'; ranges: BlkRange[] }
  | { kind: 'write-zeroes'; ranges: BlkRange[] };

/** What parsing needs to know of the device. */
export interface BlkDisk {
  capacitySectors: number;
  readOnly: boolean;
  serial: string;
}

const refused = (status: number): BlkRequest => ({ kind: 'refused', status });

/** Parses one request; see the module comment. `acked`: the features the driver accepted. */
export function parseRequest(mem: GuestMemory, acked: bigint, descs: Descriptor[], disk: BlkDisk): BlkRequest {
  const header = descs[0]!;
  if (header.writable || header.len < REQUEST_HEADER_SIZE) return refused(VIRTIO_BLK_S_IOERR);
  const type = mem.readU32(header.addr);
  const sector = mem.readU64(header.addr + 8);
  // Bytes of the header descriptor past the 16-byte header are the start of the data (any layout).
  const data: Descriptor[] = [];
  if (header.len > REQUEST_HEADER_SIZE) data.push({ addr: header.addr + REQUEST_HEADER_SIZE, len: header.len - REQUEST_HEADER_SIZE, writable: false });
  data.push(...descs.slice(1));
  const total = data.reduce((n, d) => n + d.len, 0);
  const allWritable = data.every((d) => d.writable);
  const allReadable = data.every((d) => !d.writable);

  switch (type) {
    case VIRTIO_BLK_T_IN: {
      if (!allWritable || total % SECTOR_SIZE !== 0) return refused(VIRTIO_BLK_S_IOERR);
      const offset = byteRange(disk, sector, total);
      if (offset === null) return refused(VIRTIO_BLK_S_IOERR);
      return { kind: 'read', offset, total, buffers: data };
    }
    case VIRTIO_BLK_T_OUT: {
      if (disk.readOnly || !allReadable || total % SECTOR_SIZE !== 0) return refused(VIRTIO_BLK_S_IOERR);
      const offset = byteRange(disk, sector, total);
      if (offset === null) return refused(VIRTIO_BLK_S_IOERR);
      return { kind: 'write', offset, total, parts: data.map((d) => mem.slice(d.addr, d.len)) };
    }
    case VIRTIO_BLK_T_FLUSH:
      return total !== 0 ? refused(VIRTIO_BLK_S_IOERR) : { kind: 'flush' };
    case VIRTIO_BLK_T_GET_ID: {
      if (!allWritable || total === 0) return refused(VIRTIO_BLK_S_IOERR);
      const id = new Uint8Array(VIRTIO_BLK_ID_BYTES);
      new TextEncoder().encodeInto(disk.serial, id);
      let written = 0;
      for (const d of data) {
        const n = Math.min(d.len, VIRTIO_BLK_ID_BYTES - written);
        if (n <= 0) break;
        mem.write(d.addr, id.subarray(written, written + n));
        written += n;
      }
      return { kind: 'get-id', written };
    }
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
      return parseRanges(mem, acked, type, data, total, allReadable, disk);
    default:
      return refused(VIRTIO_BLK_S_UNSUPP);
  }
}

function parseRanges(mem: GuestMemory, acked: bigint, type: number, data: Descriptor[], total: number, allReadable: boolean, disk: BlkDisk): BlkRequest {
  const discard = type === VIRTIO_BLK_T_DISCARD;
  const feature = discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES;
  if (!(acked & bit(feature))) return refused(VIRTIO_BLK_S_UNSUPP);
  if (disk.readOnly || !allReadable || total === 0 || total % DISCARD_SEGMENT_SIZE !== 0) return refused(VIRTIO_BLK_S_IOERR);
  const count = total / DISCARD_SEGMENT_SIZE;
  if (count > MAX_DISCARD_SEG) return refused(VIRTIO_BLK_S_IOERR);
  // Gather the segment array across descriptors, then check every segment before any I/O.
  const raw = new Uint8Array(total);
  let at = 0;
  for (const d of data) { raw.set(mem.slice(d.addr, d.len), at); at += d.len; }
  const view = new DataView(raw.buffer);
  const ranges: BlkRange[] = [];
  for (let i = 0; i < count; i++) {
    const sector = view.getBigUint64(i * 16, true);
    const sectors = view.getUint32(i * 16 + 8, true);
    const flags = view.getUint32(i * 16 + 12, true);
    // §5.2.6.2: unknown flags, and unmap on a discard, are UNSUPP.
    if (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP || (discard && flags !== 0)) return refused(VIRTIO_BLK_S_UNSUPP);
    if (sectors > MAX_DISCARD_SECTORS) return refused(VIRTIO_BLK_S_IOERR);
    const offset = byteRange(disk, sector, sectors * SECTOR_SIZE);
    if (offset === null) return refused(VIRTIO_BLK_S_IOERR);
    ranges.push({ offset, length: sectors * SECTOR_SIZE, unmap: (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) !== 0 });
  }
  return discard ? { kind: 'discard', ranges } : { kind: 'write-zeroes', ranges };
}

/** Byte offset of `sector` when [sector, sector + bytes) lies inside the disk, else null. */
function byteRange(disk: BlkDisk, sector: bigint, bytes: number): number | null {
  const start = sector * BigInt(SECTOR_SIZE);
  if (start + BigInt(bytes) > BigInt(disk.capacitySectors) * BigInt(SECTOR_SIZE)) return null;
  return Number(start);
}
