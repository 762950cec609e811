import { BlockError } from '../backend.js';
import type { HostFile } from '../host-file.js';
import { AUTOCLEAR_BITMAPS, EXT_BITMAPS, HDR_AUTOCLEAR, type Qcow2Header } from './format.js';
import { FLAG_COPIED, compressedHostClusters, decodeL2, getEntry, l1Offset, setEntry, type ClusterMapping } from './entries.js';
import { Qcow2Error } from './errors.js';
import type { RefcountStore } from './refcounts.js';
import { RwLock } from './rw-lock.js';

const L2_CACHE_BYTES = 16 * 1024 * 1024;
/**
 * Dirty metadata (L2 tables and refcount blocks) held in memory before it is written back in
 * crash-safe order: bounds memory and the metadata a guest that never flushes can lose.
 */
export const DIRTY_METADATA_LIMIT = 4 * 1024 * 1024;
/** Released clusters waiting for their deferred refcount decrement before a write-back. */
const PENDING_FREE_LIMIT = 65536;
/** Dirty metadata is written back at most this long after it became dirty (idle guests included). */
const WRITE_BACK_DELAY_MS = 5000;

/**
 * The metadata core of a qcow2 image: header, L1 table, L2 table cache, refcounts, what is dirty,
 * and its write-back. The cluster I/O, zeroing, compression, snapshot, resize and check modules
 * take it as a parameter; the image facade (image.ts) owns one.
 *
 * Metadata is write-back cached, as QEMU's qcow2 cache does: a write that allocates writes the
 * guest data to its new host cluster and changes refcounts and L2 entries in memory only. They
 * reach the file at a flush (guest FLUSH, close, snapshot/check/header operations), when the dirty
 * state outgrows DIRTY_METADATA_LIMIT, or WRITE_BACK_DELAY_MS after it became dirty, always in
 * crash-safe order: refcount blocks (increments), barrier (data and refcounts durable); L2 tables,
 * barrier; L1; barrier; then the deferred decrements of clusters the tables stopped naming. A
 * released cluster keeps its reference in memory until that last step, so the allocator cannot
 * hand it out while a durable table may still name it. A crash thus leaks clusters at worst.
 *
 * Anything that changes metadata holds `lock` exclusively; reads of it hold it shared.
 */
export class Qcow2Metadata {
  readonly clusterSize: number;
  readonly l2Entries: number;
  readonly lock = new RwLock();
  /** Set once this process cleared the bitmaps autoclear bit (bitmaps now inconsistent). */
  bitmapsInvalidated = false;
  private l1Table: Uint8Array;
  private readonly l2Cache = new Map<number, Uint8Array>();
  private readonly dirtyL2 = new Set<number>();
  private l1DirtyLo = Infinity;
  private l1DirtyHi = -1;
  private firstWriteDone = false;
  /** Host clusters released by COW, discard or zeroing: decremented after the tables are durable. */
  private readonly pendingFree: number[] = [];
  private writeBackTimer: ReturnType<typeof setTimeout> | null = null;
  /** Host byte where the next compressed cluster's data goes (0: in a new host cluster). */
  private compressedCursor = 0;
  private closed = false;

  constructor(
    readonly path: string,
    readonly file: HostFile,
    readonly header: Qcow2Header,
    readonly refcounts: RefcountStore,
    l1: Uint8Array,
    readonly readOnly: boolean,
    readonly durable: boolean,
  ) {
    this.clusterSize = 2 ** header.clusterBits;
    this.l2Entries = this.clusterSize / 8;
    this.l1Table = l1;
  }

  get size(): number {
    return this.header.size;
  }

  get clusterBits(): number {
    return this.header.clusterBits;
  }

  get l1Size(): number {
    return this.header.l1Size;
  }

  /** The active L1 table (changed only through setL1 and replaceL1, which track what is dirty). */
  get l1(): Uint8Array {
    return this.l1Table;
  }

  /** True once beforeFirstWrite() ran: overwrites in place may skip the exclusive lock. */
  get written(): boolean {
    return this.firstWriteDone;
  }

  checkWritable(): void {
    if (this.readOnly) throw new BlockError(`${this.path}: image is open read-only`);
  }

  /** fdatasync of the file (a no-op for images opened with `durable: false` or read-only). */
  async sync(): Promise<void> {
    if (this.durable && !this.readOnly) await this.file.datasync();
  }

  /**
   * Makes everything written so far durable, cached metadata included (written back in crash-safe
   * order first). The caller holds the exclusive lock. Callers use it before a header change that
   * must not get ahead of the image's content.
   */
  async barrier(): Promise<void> {
    if (this.readOnly) return;
    await this.writeBackMetadata();
    await this.sync();
  }

  async writeHeaderU64(at: number, value: bigint): Promise<void> {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, value, false);
    await this.file.writeAt(at, b);
    await this.barrier();
  }

  async loadL2(offset: number): Promise<Uint8Array> {
    const hit = this.l2Cache.get(offset);
    if (hit !== undefined) {
      this.l2Cache.delete(offset);
      this.l2Cache.set(offset, hit);
      return hit;
    }
    // Metadata outside the file is corruption; following it would write far beyond the image.
    if (offset % this.clusterSize !== 0 || offset >= this.refcounts.endCluster * this.clusterSize) {
      throw new Qcow2Error(`${this.path}: corrupt qcow2 image: L2 table at invalid offset ${offset}; repair it with "tsvmm-img check -r all"`);
    }
    const table = new Uint8Array(this.clusterSize);
    await this.file.readAt(offset, table);
    this.cacheL2(offset, table);
    return table;
  }

  private cacheL2(offset: number, table: Uint8Array): void {
    this.l2Cache.set(offset, table);
    let excess = this.l2Cache.size * this.clusterSize - L2_CACHE_BYTES;
    for (const key of this.l2Cache.keys()) {
      if (excess <= 0 || this.l2Cache.size <= 2) break;
      if (this.dirtyL2.has(key)) continue;
      this.l2Cache.delete(key);
      excess -= this.clusterSize;
    }
  }

  markL2Dirty(offset: number): void {
    this.dirtyL2.add(offset);
  }

  setL1(index: number, value: bigint): void {
    setEntry(this.l1, index, value);
    this.l1DirtyLo = Math.min(this.l1DirtyLo, index * 8);
    this.l1DirtyHi = Math.max(this.l1DirtyHi, index * 8 + 8);
  }

  /** Replaces the active L1 table (after the header points at `offset`). */
  replaceL1(l1: Uint8Array, offset: number): void {
    this.l1Table = l1;
    this.header.l1Size = l1.byteLength / 8;
    this.header.l1TableOffset = offset;
    this.l1DirtyLo = Infinity;
    this.l1DirtyHi = -1;
  }

  /**
   * Forgets cached L2 tables (after another structure rewrote them on disk). Dirty tables must have
   * been written back first (barrier()): forgetting them would lose their changes.
   */
  dropCaches(): void {
    if (this.dirtyL2.size > 0) throw new Qcow2Error(`${this.path}: internal error: cached L2 tables dropped before their write-back`);
    this.l2Cache.clear();
  }

  /** True while some metadata change or deferred decrement has not been written to the file. */
  get hasDirtyMetadata(): boolean {
    return this.dirtyL2.size > 0 || this.l1DirtyHi >= 0 || this.pendingFree.length > 0 || this.refcounts.dirtyBlockCount > 0;
  }

  /**
   * Writes dirty L2 tables, then the changed part of the L1 table. Refcount increments (and the
   * guest data written before) are made durable first: no durable table may name a cluster whose
   * refcount or data is not on disk. The L1 follows a barrier: it must not name an L2 table that
   * is not durable yet.
   */
  async writeBackTables(): Promise<void> {
    if (this.dirtyL2.size === 0 && this.l1DirtyHi < 0) return;
    await this.refcounts.writeBack();
    await this.sync();
    for (const offset of [...this.dirtyL2]) {
      const table = this.l2Cache.get(offset);
      if (table !== undefined) await this.file.writeAt(offset, table);
      this.dirtyL2.delete(offset);
    }
    if (this.l1DirtyHi >= 0) {
      await this.sync();
      await this.file.writeAt(this.header.l1TableOffset + this.l1DirtyLo, this.l1.subarray(this.l1DirtyLo, this.l1DirtyHi));
      this.l1DirtyLo = Infinity;
      this.l1DirtyHi = -1;
    }
  }

  /**
   * Writes all cached metadata in crash-safe order (see the class comment): refcounts, barrier,
   * tables, barrier, then the deferred decrements. Ends without a barrier of its own: flush() and
   * barrier() add one. The caller holds the exclusive lock.
   */
  async writeBackMetadata(): Promise<void> {
    this.cancelWriteBackTimer();
    await this.writeBackTables();
    if (this.pendingFree.length > 0) {
      // The tables that stopped naming these clusters must be durable before the references go.
      await this.sync();
      const clusters = this.pendingFree.splice(0);
      for (const c of clusters) await this.refcounts.adjust(c, -1);
    }
    await this.refcounts.writeBack();
  }

  /**
   * Keeps the dirty state bounded: writes it back when it outgrows its limits, and otherwise makes
   * sure a timer writes it back soon. The caller holds the exclusive lock.
   */
  async limitDirtyMetadata(): Promise<void> {
    const dirtyBytes = (this.dirtyL2.size + this.refcounts.dirtyBlockCount) * this.clusterSize;
    if (dirtyBytes > DIRTY_METADATA_LIMIT || this.pendingFree.length > PENDING_FREE_LIMIT) {
      await this.writeBackMetadata();
      return;
    }
    if (this.writeBackTimer === null && this.hasDirtyMetadata) {
      this.writeBackTimer = setTimeout(() => {
        this.writeBackTimer = null;
        // A failed background write-back leaves the state dirty: the next flush retries it and
        // reports the error to a caller that can act on it.
        this.lock.exclusive(async () => {
          if (!this.closed) await this.writeBackMetadata();
        }).catch(() => {});
      }, WRITE_BACK_DELAY_MS);
      this.writeBackTimer.unref();
    }
  }

  cancelWriteBackTimer(): void {
    if (this.writeBackTimer !== null) clearTimeout(this.writeBackTimer);
    this.writeBackTimer = null;
  }

  /** The mapping of guest cluster `cluster` in this image alone. */
  async lookup(cluster: number): Promise<ClusterMapping> {
    const i1 = Math.floor(cluster / this.l2Entries);
    if (i1 >= this.header.l1Size) return { kind: 'unallocated' };
    const l2 = l1Offset(getEntry(this.l1, i1));
    if (l2 === 0) return { kind: 'unallocated' };
    const table = await this.loadL2(l2);
    const m = decodeL2(getEntry(table, cluster % this.l2Entries), this.header.clusterBits, this.header.version);
    if ((m.kind === 'data' || m.kind === 'zero') &&
      (m.hostOffset % this.clusterSize !== 0 || m.hostOffset >= this.refcounts.endCluster * this.clusterSize)) {
      throw new Qcow2Error(`${this.path}: corrupt qcow2 image: cluster ${cluster} maps to invalid host offset ${m.hostOffset}`);
    }
    return m;
  }

  /** Work due before the first change of the image: invalidate bitmaps we cannot maintain. */
  async beforeFirstWrite(): Promise<void> {
    if (this.firstWriteDone) return;
    this.firstWriteDone = true;
    if (this.header.version === 3 && this.header.autoclear !== 0n) {
      // Autoclear bits name features whose data a writer must keep consistent (bit 0: bitmaps).
      // tsvmm does not update them, so the spec requires clearing the bits before writing.
      if (this.header.autoclear & AUTOCLEAR_BITMAPS && this.header.extensions.some((e) => e.type === EXT_BITMAPS)) {
        this.bitmapsInvalidated = true;
      }
      this.header.autoclear = 0n;
      await this.writeHeaderU64(HDR_AUTOCLEAR, 0n);
    }
  }

  /**
   * The L2 table for `cluster`, owned by the active L1 alone (refcount 1): allocated when missing,
   * copied when shared with a snapshot (the old table's reference is dropped via `decrements`).
   */
  async ownedL2(cluster: number, decrements: number[]): Promise<{ table: Uint8Array; index: number; offset: number }> {
    const i1 = Math.floor(cluster / this.l2Entries);
    const index = cluster % this.l2Entries;
    if (i1 >= this.header.l1Size) throw new Qcow2Error(`${this.path}: L1 table too small for cluster ${cluster}`);
    const entry = getEntry(this.l1, i1);
    const old = l1Offset(entry);
    if (old !== 0 && entry & FLAG_COPIED) return { table: await this.loadL2(old), index, offset: old };
    if (old !== 0 && (await this.refcounts.get(old / this.clusterSize)) === 1) {
      this.setL1(i1, BigInt(old) | FLAG_COPIED);
      return { table: await this.loadL2(old), index, offset: old };
    }
    const offset = await this.refcounts.allocate(1);
    const table = new Uint8Array(this.clusterSize);
    if (old !== 0) {
      table.set(await this.loadL2(old));
      // Every cluster the shared table names is also named by the snapshot: none is COPIED.
      for (let i = 0; i < this.l2Entries; i++) {
        const e = getEntry(table, i);
        if (e & FLAG_COPIED) setEntry(table, i, e & ~FLAG_COPIED);
      }
      decrements.push(old / this.clusterSize);
    }
    this.cacheL2(offset, table);
    this.markL2Dirty(offset);
    this.setL1(i1, BigInt(offset) | FLAG_COPIED);
    return { table, index, offset };
  }

  /** Host clusters the entry referenced, each to be decremented once it is unreferenced. */
  releasedClusters(m: ClusterMapping): number[] {
    if (m.kind === 'data' || (m.kind === 'zero' && m.hostOffset !== 0)) return [m.hostOffset / this.clusterSize];
    if (m.kind === 'compressed') return compressedHostClusters(m, this.header.clusterBits);
    return [];
  }

  /**
   * Drops one reference from each cluster once no durable table can name it: the decrements are
   * deferred to the next write-back, after the tables that stopped naming the clusters. Until then
   * the clusters keep their reference, so the allocator cannot reuse them.
   */
  async release(clusters: number[]): Promise<void> {
    for (const c of clusters) this.pendingFree.push(c);
    // The next compressed cluster must not be packed into a host cluster that may be freed.
    if (clusters.length > 0) this.compressedCursor = 0;
  }

  l2OffsetOf(cluster: number): number {
    return l1Offset(getEntry(this.l1, Math.floor(cluster / this.l2Entries)));
  }

  /**
   * `length` bytes for compressed data: right after the previous compressed cluster when they fit
   * in the host cluster it ends in (which then gains a reference), else at the start of newly
   * allocated clusters (one reference each), as the refcounts of compressed clusters count.
   */
  async allocateCompressedBytes(length: number): Promise<number> {
    const cs = this.clusterSize;
    let at = this.compressedCursor;
    if (at % cs !== 0 && Math.floor((at + length - 1) / cs) === Math.floor(at / cs)) {
      await this.refcounts.adjust(Math.floor(at / cs), 1);
    } else {
      at = await this.refcounts.allocate(Math.ceil(length / cs));
    }
    this.compressedCursor = at + length;
    return at;
  }

  async flushUnlocked(): Promise<void> {
    if (this.readOnly) return;
    await this.writeBackMetadata();
    await this.file.datasync();
  }

  /** Stops the background write-back (the image is closing; flush first). */
  close(): void {
    this.closed = true;
    this.cancelWriteBackTimer();
  }
}
