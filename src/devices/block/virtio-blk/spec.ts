/** virtio-blk (virtio 1.x §5.2). */
export const VIRTIO_ID_BLOCK = 2;

export const VIRTIO_BLK_F_SIZE_MAX = 1n;
export const VIRTIO_BLK_F_SEG_MAX = 2n;
export const VIRTIO_BLK_F_RO = 5n;
export const VIRTIO_BLK_F_BLK_SIZE = 6n;
export const VIRTIO_BLK_F_FLUSH = 9n;
export const VIRTIO_BLK_F_DISCARD = 13n;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14n;

export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;

export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;

export const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;

export const SECTOR_SIZE = 512;
export const VIRTIO_BLK_ID_BYTES = 20;
export const REQUEST_HEADER_SIZE = 16;
export const DISCARD_SEGMENT_SIZE = 16;
const BLK_CONFIG_SIZE = 60;

export const DEFAULT_QUEUE_SIZE = 256;
const SIZE_MAX = 1 << 20; // largest single data segment the driver should build
/** Per segment: keeps one range below 2 GiB so byte counts stay small integers. */
export const MAX_DISCARD_SECTORS = 0x3fffff;
export const MAX_DISCARD_SEG = 32;
const BLOCK_SIZE = 512;

/** The device configuration space (virtio 1.x §5.2.4) of a disk of `capacitySectors` sectors. */
export function configSpace(capacitySectors: number, queueSize: number): Uint8Array {
  const b = new Uint8Array(BLK_CONFIG_SIZE);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, BigInt(capacitySectors), true);
  v.setUint32(8, SIZE_MAX, true);
  v.setUint32(12, queueSize - 2, true); // seg_max: header and status take two descriptors
  v.setUint32(20, BLOCK_SIZE, true);
  v.setUint32(36, MAX_DISCARD_SECTORS, true);
  v.setUint32(40, MAX_DISCARD_SEG, true);
  v.setUint32(44, 1, true); // discard_sector_alignment, in sectors
  v.setUint32(48, MAX_DISCARD_SECTORS, true);
  v.setUint32(52, MAX_DISCARD_SEG, true);
  v.setUint8(56, 1); // write_zeroes_may_unmap
  return b;
}
