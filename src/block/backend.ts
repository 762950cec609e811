import { TsvmmError } from '../errors.js';

/** An I/O failure of a disk image (the request fails; the VMM keeps running). */
export class BlockError extends TsvmmError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('EBLOCK', message, details);
  }
}

export type ImageFormat = 'raw' | 'qcow2';

/**
 * What one layer holds in a run of bytes: 'data' (stored plainly, at `hostOffset` in the file
 * when known), 'compressed', 'zero' (reads as zeros without reading the backing file; a raw
 * file's hole has a `hostOffset` too) or 'unallocated' (reads through to the backing file).
 */
export interface LayerStatus {
  length: number;
  kind: 'data' | 'compressed' | 'zero' | 'unallocated';
  hostOffset?: number;
}

/**
 * A virtual disk as virtio-blk and tsvmm-img see it: a byte-addressed device of `size` bytes.
 * Implementations: raw files (raw.ts) and qcow2 chains (qcow2/). All I/O is asynchronous so the
 * caller's event loop never waits on the disk; requests may be in flight concurrently, and an
 * implementation serialises internally whatever must be serialised (e.g. qcow2 metadata updates).
 * As on a real disk (and as virtio-blk specifies), requests in flight together have no order
 * among themselves: a read overlapping an unfinished write may see either content.
 * Buffers may be live views of guest RAM: read into them / write from them directly.
 */
export interface BlockBackend {
  /** The image file as it was opened (callers resolve it to compare layers). */
  readonly path: string;
  /** Virtual size in bytes. */
  readonly size: number;
  readonly readOnly: boolean;
  /** What `info` and `vm.info` report. */
  readonly format: ImageFormat;
  /** The image below this one in its chain (null: a raw image, or an image without backing file). */
  readonly backing: BlockBackend | null;
  /**
   * What this layer alone holds at `offset`: one run of at most `maxLength` bytes of one kind.
   * Chain-wide status (what reads see, through the backing files) is block/chain/walk.ts.
   */
  blockStatus(offset: number, maxLength: number): Promise<LayerStatus>;
  /** Reads `into.byteLength` bytes at `offset`; offset + length must be <= size. */
  read(offset: number, into: Uint8Array): Promise<void>;
  write(offset: number, data: Uint8Array): Promise<void>;
  /**
   * Optional: writes `parts` back to back from `offset` as one request (virtio-blk merges the
   * guest's sequential writes into one; at most 1024 parts).
   */
  writev?(offset: number, parts: Uint8Array[]): Promise<void>;
  /** Makes every completed write durable (fdatasync of every file written). */
  flush(): Promise<void>;
  /** Hints that [offset, offset+length) is unused; reads may then return zeros or old data. */
  discard(offset: number, length: number): Promise<void>;
  /** [offset, offset+length) reads as zeros afterwards; `unmap` allows freeing the space. */
  writeZeroes(offset: number, length: number, unmap: boolean): Promise<void>;
  /**
   * Changes the virtual size. A grown tail reads as zeros. Raw images may also shrink (their tail
   * is cut off); qcow2 images only grow, to a multiple of 512 bytes, and not while internal
   * snapshots keep the old size. Callers stop I/O to the image first.
   */
  resize(newSize: number): Promise<void>;
  close(): Promise<void>;
}
