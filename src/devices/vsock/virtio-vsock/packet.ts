/**
 * The virtio-vsock packet header (virtio 1.2 §5.10.6): 44 little-endian bytes in front of every
 * packet on the rx and tx queues, and the event the device posts on its event queue.
 */

export const HEADER_BYTES = 44;
/** The host's CID (VMADDR_CID_HOST). */
export const HOST_CID = 2;

export const TYPE_STREAM = 1;

export const OP_REQUEST = 1;
export const OP_RESPONSE = 2;
export const OP_RST = 3;
export const OP_SHUTDOWN = 4;
export const OP_RW = 5;
export const OP_CREDIT_UPDATE = 6;
export const OP_CREDIT_REQUEST = 7;

/** SHUTDOWN flags: the sender will receive no more / send no more. */
export const SHUTDOWN_RCV = 1;
export const SHUTDOWN_SEND = 2;

/** The only event (struct virtio_vsock_event.id): every connection is gone, re-read the CID. */
export const EVENT_TRANSPORT_RESET = 0;
export const EVENT_BYTES = 4;

export interface VsockHeader {
  srcCid: number;
  dstCid: number;
  srcPort: number;
  dstPort: number;
  len: number;
  type: number;
  op: number;
  flags: number;
  bufAlloc: number;
  fwdCnt: number;
}

/**
 * Reads a header. CIDs are 64-bit on the wire but 32-bit in every implementation (Linux keeps
 * them in a u32); a CID above 2^32 - 1 reads as -1, which matches nothing.
 */
export function parseHeader(b: Uint8Array): VsockHeader {
  const v = new DataView(b.buffer, b.byteOffset, HEADER_BYTES);
  const cid = (at: number): number => (v.getUint32(at + 4, true) === 0 ? v.getUint32(at, true) : -1);
  return {
    srcCid: cid(0),
    dstCid: cid(8),
    srcPort: v.getUint32(16, true),
    dstPort: v.getUint32(20, true),
    len: v.getUint32(24, true),
    type: v.getUint16(28, true),
    op: v.getUint16(30, true),
    flags: v.getUint32(32, true),
    bufAlloc: v.getUint32(36, true),
    fwdCnt: v.getUint32(40, true),
  };
}

export function writeHeader(h: VsockHeader, into: Uint8Array): void {
  const v = new DataView(into.buffer, into.byteOffset, HEADER_BYTES);
  v.setUint32(0, h.srcCid, true);
  v.setUint32(4, 0, true);
  v.setUint32(8, h.dstCid, true);
  v.setUint32(12, 0, true);
  v.setUint32(16, h.srcPort, true);
  v.setUint32(20, h.dstPort, true);
  v.setUint32(24, h.len, true);
  v.setUint16(28, h.type, true);
  v.setUint16(30, h.op, true);
  v.setUint32(32, h.flags, true);
  v.setUint32(36, h.bufAlloc >>> 0, true);
  v.setUint32(40, h.fwdCnt >>> 0, true);
}
