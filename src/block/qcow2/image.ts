import { dirname, isAbsolute, resolve } from 'node:path';
import { BlockError, type BlockBackend, type LayerStatus } from '../backend.js';
import { HostFile } from '../host-file.js';
import { rebuildRefcounts } from './check.js';
import { ClusterIo } from './clusters.js';
import { writeCompressed } from './compression.js';
import { HDR_INCOMPAT, INCOMPAT_DIRTY, checkFeatures, parseHeader, peekClusterBits } from './format.js';
import { Qcow2Metadata } from './metadata.js';
import { RefcountStore } from './refcounts.js';
import { grow } from './resize.js';
import type { RwLock } from './rw-lock.js';
import { zeroRange, type ZeroMode } from './zeroing.js';

export type BackingOpener = (path: string, format: string | null) => Promise<BlockBackend>;

export interface Qcow2OpenOptions {
  readOnly: boolean;
  /** Opens a backing file (read-only). Without it the image is opened without its backing chain. */
  openBacking?: BackingOpener;
  /**
   * fdatasync at each metadata ordering point (default true). Only a freshly created image whose
   * content is worthless after a crash (convert output) turns it off; flush() still syncs.
   */
  durable?: boolean;
}

/**
 * A qcow2 image (v2/v3) as a BlockBackend: the facade over its metadata core (metadata.ts, which
 * also holds the lock and the crash-ordered write-back) and its cluster I/O (clusters.ts). Reads,
 * and overwrites of clusters the image alone owns (L1 and L2 entries COPIED), share the lock;
 * anything that may change metadata holds it alone.
 */
export class Qcow2Image implements BlockBackend {
  readonly format = 'qcow2';
  private readonly io: ClusterIo;

  private constructor(readonly meta: Qcow2Metadata, public backing: BlockBackend | null) {
    this.io = new ClusterIo(meta, () => this.backing);
  }

  static async open(path: string, options: Qcow2OpenOptions): Promise<Qcow2Image> {
    const file = await HostFile.open(path, !options.readOnly);
    try {
      const first = new Uint8Array(512);
      await file.readAt(0, first);
      const clusterBits = peekClusterBits(first);
      const cluster = new Uint8Array(2 ** clusterBits);
      await file.readAt(0, cluster);
      const header = parseHeader(cluster);
      checkFeatures(header, path, !options.readOnly);
      const durable = options.durable ?? true;
      const barrier = durable && !options.readOnly ? () => file.datasync() : async () => {};
      const refcounts = await RefcountStore.load(file, clusterBits, header.refcountOrder, header.refcountTableOffset,
        header.refcountTableClusters, barrier);
      const l1 = new Uint8Array(header.l1Size * 8);
      await file.readAt(header.l1TableOffset, l1);
      let backing: BlockBackend | null = null;
      if (header.backingFile !== null && options.openBacking !== undefined) {
        backing = await options.openBacking(resolveBackingPath(path, header.backingFile), header.backingFormat);
      }
      const meta = new Qcow2Metadata(path, file, header, refcounts, l1, options.readOnly, durable);
      if (!options.readOnly && header.incompatible & INCOMPAT_DIRTY) {
        // Lazy refcounts left the image dirty: refcounts may be too low, rebuild before writing.
        await rebuildRefcounts(meta);
        header.incompatible &= ~INCOMPAT_DIRTY;
        await meta.writeHeaderU64(HDR_INCOMPAT, header.incompatible);
      }
      return new Qcow2Image(meta, backing);
    } catch (err) {
      await file.close();
      throw err;
    }
  }

  get path(): string {
    return this.meta.path;
  }

  get size(): number {
    return this.meta.size;
  }

  get readOnly(): boolean {
    return this.meta.readOnly;
  }

  get clusterSize(): number {
    return this.meta.clusterSize;
  }

  get lock(): RwLock {
    return this.meta.lock;
  }

  /**
   * Status of the run starting at `offset` (at most `maxLength` bytes) sharing one kind in this
   * image; a data run is one whose host clusters follow each other.
   */
  async blockStatus(offset: number, maxLength: number): Promise<LayerStatus> {
    const meta = this.meta;
    const cs = meta.clusterSize;
    return meta.lock.shared(async () => {
      const end = Math.min(meta.size, offset + maxLength);
      const first = await meta.lookup(Math.floor(offset / cs));
      let cursor = (Math.floor(offset / cs) + 1) * cs;
      let expectHost = first.kind === 'data' ? first.hostOffset + cs : -1;
      while (cursor < end) {
        const m = await meta.lookup(cursor / cs);
        if (m.kind !== first.kind || first.kind === 'compressed') break;
        if (m.kind === 'data') {
          if (m.hostOffset !== expectHost) break;
          expectHost += cs;
        }
        cursor += cs;
      }
      const length = Math.min(cursor, end) - offset;
      if (first.kind === 'data') return { kind: 'data', length, hostOffset: first.hostOffset + (offset % cs) };
      return { kind: first.kind, length };
    });
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    this.checkRange(offset, into.byteLength);
    await this.meta.lock.shared(() => this.io.readUnlocked(offset, into));
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.meta.checkWritable();
    this.checkRange(offset, data.byteLength);
    if (data.byteLength === 0) return;
    // Overwrites of clusters this image alone owns change no metadata: they run under the shared
    // lock, side by side with reads and with each other (a guest keeps many writes in flight).
    if (this.meta.written && await this.meta.lock.shared(() => this.io.writeInPlace(offset, data))) return;
    await this.meta.lock.exclusive(() => this.io.writeUnlocked(offset, data));
  }

  /** write() for a caller that holds the exclusive lock (copy-up, commit). */
  async writeUnlocked(offset: number, data: Uint8Array): Promise<void> {
    await this.io.writeUnlocked(offset, data);
  }

  async writeZeroes(offset: number, length: number, unmap: boolean): Promise<void> {
    this.meta.checkWritable();
    this.checkRange(offset, length);
    await this.meta.lock.exclusive(() => this.zeroUnlocked(offset, length, unmap ? 'zero-unmap' : 'zero'));
  }

  async discard(offset: number, length: number): Promise<void> {
    this.meta.checkWritable();
    this.checkRange(offset, length);
    await this.meta.lock.exclusive(() => this.zeroUnlocked(offset, length, 'discard'));
  }

  /** Zeroing, discarding and unallocating ranges (zeroing.ts); the caller holds the exclusive lock. */
  async zeroUnlocked(offset: number, length: number, how: ZeroMode): Promise<void> {
    await zeroRange(this.meta, this.io, offset, length, how);
  }

  /** Stores one cluster compressed (compression.ts); false when it was written plainly instead. */
  async writeCompressed(offset: number, data: Uint8Array): Promise<boolean> {
    return writeCompressed(this.meta, (o, d) => this.write(o, d), offset, data);
  }

  /** Grows the virtual disk (resize.ts); internal snapshots' tables would keep the old size. */
  async resize(newSize: number): Promise<void> {
    const snapshots = this.meta.header.nbSnapshots;
    if (snapshots > 0 && newSize !== this.size) {
      throw new BlockError(`${this.path}: has ${snapshots} internal snapshot(s), which keep the old size; delete them before resizing`);
    }
    await grow(this.meta, newSize);
  }

  /** Writes cached metadata back in crash-safe order and makes every completed write durable. */
  async flush(): Promise<void> {
    if (!this.meta.readOnly) await this.meta.lock.exclusive(() => this.meta.flushUnlocked());
  }

  async close(): Promise<void> {
    if (!this.meta.readOnly) await this.flush();
    this.meta.close();
    await this.meta.file.close();
    await this.backing?.close();
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new BlockError(`${this.path}: request [${offset}, +${length}) is outside the ${this.size}-byte disk`);
    }
  }
}

/** A backing file name resolved the way QEMU does: relative names against the overlay's folder. */
export function resolveBackingPath(overlayPath: string, name: string): string {
  const plain = name.startsWith('file:') ? name.slice(5) : name;
  return isAbsolute(plain) ? plain : resolve(dirname(overlayPath), plain);
}
