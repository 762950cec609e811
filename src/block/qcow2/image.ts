import { dirname, isAbsolute, resolve } from 'node:path';
import { deflateRawSync, inflateRawSync, constants as zc } from 'node:zlib';
import { BlockError, type BlockBackend, type LayerStatus } from '../backend.js';
import {
  AUTOCLEAR_BITMAPS, EXT_BITMAPS, HDR_AUTOCLEAR, HDR_INCOMPAT, HDR_L1, HDR_SIZE, INCOMPAT_DIRTY, L1_MAX_ENTRIES,
  checkFeatures, parseHeader, peekClusterBits, type Qcow2Header,
} from './format.js';
import {
  FLAG_COPIED, compressedEntry, compressedHostClusters, dataEntry, decodeL2, getEntry, l1Offset, setEntry,
  type ClusterMapping,
} from './entries.js';
import { Qcow2Error } from './errors.js';
import { HostFile } from '../host-file.js';
import { RefcountStore } from './refcounts.js';
import { RwLock } from './rw-lock.js';
import { zeroRange, type ZeroMode } from './zeroing.js';

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
/** Largest number of clusters one write request allocates at once (bounds buffer sizes). */
const MAX_CLUSTERS_PER_ROUND = 4096;
/** Scratch cluster buffers kept for copy-on-write (a request has at most two partial clusters). */
const MAX_SCRATCH_CLUSTERS = 2;

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

interface PendingWrite {
  cluster: number; // guest cluster index
  mapping: ClusterMapping;
  table: Uint8Array; // L2 table holding its entry
  index: number; // entry index in that table
  /** Bytes [from, to) of the cluster covered by the request, taken from data at `source`. */
  from: number;
  to: number;
  source: number;
}

/**
 * A qcow2 image (v2/v3) as a BlockBackend. Reads of allocated clusters run concurrently; anything
 * that may change metadata holds the exclusive lock.
 *
 * Metadata is write-back cached, as QEMU's qcow2 cache does: a write that allocates writes the
 * guest data to its new host cluster and changes refcounts and L2 entries in memory only. They
 * reach the file at a flush (guest FLUSH, close, snapshot/check/header operations), when the dirty
 * state outgrows DIRTY_METADATA_LIMIT, or WRITE_BACK_DELAY_MS after it became dirty, always in
 * crash-safe order: refcount blocks (increments), barrier (data and refcounts durable); L2 tables,
 * barrier; L1; barrier; then the deferred decrements of clusters the tables stopped naming. A
 * released cluster keeps its reference in memory until that last step, so the allocator cannot
 * hand it out while a durable table may still name it. A crash thus leaks clusters at worst.
 */
export class Qcow2Image implements BlockBackend {
  readonly format = 'qcow2';
  readonly clusterSize: number;
  readonly l2Entries: number;
  readonly lock = new RwLock();
  /** Set once this process cleared the bitmaps autoclear bit (bitmaps now inconsistent). */
  bitmapsInvalidated = false;
  private readonly l2Cache = new Map<number, Uint8Array>();
  private readonly dirtyL2 = new Set<number>();
  private l1DirtyLo = Infinity;
  private l1DirtyHi = -1;
  private firstWriteDone = false;
  private lastCompressed: { offset: number; data: Uint8Array } | null = null;
  /** Host clusters released by COW, discard or zeroing: decremented after the tables are durable. */
  private readonly pendingFree: number[] = [];
  private writeBackTimer: ReturnType<typeof setTimeout> | null = null;
  /** Cluster buffers for assembling copy-on-write clusters (used under the exclusive lock). */
  private readonly scratch: Uint8Array[] = [];
  /** Host byte where the next compressed cluster's data goes (0: in a new host cluster). */
  private compressedCursor = 0;
  private closed = false;

  private constructor(
    readonly path: string,
    readonly file: HostFile,
    readonly header: Qcow2Header,
    readonly refcounts: RefcountStore,
    public l1: Uint8Array,
    public backing: BlockBackend | null,
    readonly readOnly: boolean,
    readonly durable: boolean,
  ) {
    this.clusterSize = 2 ** header.clusterBits;
    this.l2Entries = this.clusterSize / 8;
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
      const image = new Qcow2Image(path, file, header, refcounts, l1, backing, options.readOnly, durable);
      if (!options.readOnly && header.incompatible & INCOMPAT_DIRTY) {
        // Lazy refcounts left the image dirty: refcounts may be too low, rebuild before writing.
        const { rebuildRefcounts } = await import('./check.js');
        await rebuildRefcounts(image);
        header.incompatible &= ~INCOMPAT_DIRTY;
        await image.writeHeaderU64(HDR_INCOMPAT, header.incompatible);
      }
      return image;
    } catch (err) {
      await file.close();
      throw err;
    }
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

  /** fdatasync of the file (a no-op for images opened with `durable: false` or read-only). */
  private async sync(): Promise<void> {
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

  // ---- metadata access -------------------------------------------------------------------

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
    this.l1 = l1;
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
  private async writeBackMetadata(): Promise<void> {
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

  private cancelWriteBackTimer(): void {
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

  /**
   * Status of the run starting at `offset` (at most `maxLength` bytes) sharing one kind in this
   * image; a data run is one whose host clusters follow each other.
   */
  async blockStatus(offset: number, maxLength: number): Promise<LayerStatus> {
    return this.lock.shared(async () => {
      const end = Math.min(this.size, offset + maxLength);
      const first = await this.lookup(Math.floor(offset / this.clusterSize));
      let cursor = (Math.floor(offset / this.clusterSize) + 1) * this.clusterSize;
      let expectHost = first.kind === 'data' ? first.hostOffset + this.clusterSize : -1;
      while (cursor < end) {
        const m = await this.lookup(cursor / this.clusterSize);
        if (m.kind !== first.kind || first.kind === 'compressed') break;
        if (m.kind === 'data') {
          if (m.hostOffset !== expectHost) break;
          expectHost += this.clusterSize;
        }
        cursor += this.clusterSize;
      }
      const length = Math.min(cursor, end) - offset;
      if (first.kind === 'data') return { kind: 'data', length, hostOffset: first.hostOffset + (offset % this.clusterSize) };
      return { kind: first.kind, length };
    });
  }

  // ---- reads -----------------------------------------------------------------------------

  async read(offset: number, into: Uint8Array): Promise<void> {
    this.checkRange(offset, into.byteLength);
    await this.lock.shared(() => this.readUnlocked(offset, into));
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new BlockError(`${this.path}: request [${offset}, +${length}) is outside the ${this.size}-byte disk`);
    }
  }

  private async readUnlocked(offset: number, into: Uint8Array): Promise<void> {
    const cs = this.clusterSize;
    let pos = 0;
    while (pos < into.byteLength) {
      const guest = offset + pos;
      const cluster = Math.floor(guest / cs);
      const m = await this.lookup(cluster);
      let length = Math.min(cs - (guest % cs), into.byteLength - pos);
      // Extend over following clusters of the same contiguous kind: one host read for the run.
      let nextHost = m.kind === 'data' ? m.hostOffset + cs : 0;
      while (pos + length < into.byteLength && (m.kind === 'data' || m.kind === 'unallocated' || m.kind === 'zero')) {
        const n = await this.lookup(Math.floor((guest + length) / cs));
        if (n.kind !== m.kind || (m.kind === 'data' && (n as { hostOffset: number }).hostOffset !== nextHost)) break;
        nextHost += cs;
        length = Math.min(length + cs, into.byteLength - pos);
      }
      const part = into.subarray(pos, pos + length);
      await this.readMapped(guest, m, part);
      pos += length;
    }
  }

  /** Fills `part` (guest bytes from `guest`, within one run of mapping `m`). */
  private async readMapped(guest: number, m: ClusterMapping, part: Uint8Array): Promise<void> {
    switch (m.kind) {
      case 'data':
        await this.file.readAt(m.hostOffset + (guest % this.clusterSize), part);
        return;
      case 'zero':
        part.fill(0);
        return;
      case 'unallocated':
        await this.readBacking(guest, part);
        return;
      case 'compressed': {
        const data = await this.decompress(m);
        part.set(data.subarray(guest % this.clusterSize, (guest % this.clusterSize) + part.byteLength));
        return;
      }
    }
  }

  private async readBacking(guest: number, part: Uint8Array): Promise<void> {
    const backing = this.backing;
    const inBacking = backing === null ? 0 : Math.max(0, Math.min(part.byteLength, backing.size - guest));
    if (inBacking > 0) await backing!.read(guest, part.subarray(0, inBacking));
    part.fill(0, inBacking);
  }

  async decompress(m: { hostOffset: number; maxBytes: number }): Promise<Uint8Array> {
    if (this.lastCompressed?.offset === m.hostOffset) return this.lastCompressed.data;
    const raw = new Uint8Array(m.maxBytes);
    await this.file.readAt(m.hostOffset, raw);
    let data: Uint8Array;
    try {
      data = inflateRawSync(raw, { finishFlush: zc.Z_SYNC_FLUSH, maxOutputLength: this.clusterSize });
    } catch (err) {
      throw new Qcow2Error(`${this.path}: corrupt compressed cluster at host offset ${m.hostOffset}: ${(err as Error).message}`);
    }
    if (data.byteLength !== this.clusterSize) {
      throw new Qcow2Error(`${this.path}: compressed cluster at host offset ${m.hostOffset} inflates to ${data.byteLength} bytes, not ${this.clusterSize}`);
    }
    this.lastCompressed = { offset: m.hostOffset, data };
    return data;
  }

  // ---- writes ----------------------------------------------------------------------------

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, data.byteLength);
    if (data.byteLength === 0) return;
    // Overwrites of clusters this image alone owns change no metadata: they run under the shared
    // lock, side by side with reads and with each other (a guest keeps many writes in flight).
    if (this.firstWriteDone && await this.lock.shared(() => this.writeInPlace(offset, data))) return;
    await this.lock.exclusive(() => this.writeUnlocked(offset, data));
  }

  /**
   * Writes `data` when every cluster it touches is a data cluster with COPIED set (refcount 1, so
   * no snapshot or other table shares it); otherwise writes nothing and returns false. The caller
   * holds the shared lock, so no mapping can change meanwhile.
   */
  private async writeInPlace(offset: number, data: Uint8Array): Promise<boolean> {
    const cs = this.clusterSize;
    const pieces: { host: number; from: number; to: number }[] = [];
    for (let pos = 0; pos < data.byteLength;) {
      const guest = offset + pos;
      const cluster = Math.floor(guest / cs);
      // The table must be this image's alone too: an entry's COPIED flag inside a table shared
      // with a snapshot would be a corruption, and the exclusive path copes with that.
      if (!(getEntry(this.l1, Math.floor(cluster / this.l2Entries)) & FLAG_COPIED)) return false;
      const m = await this.lookup(cluster);
      if (m.kind !== 'data' || !m.copied) return false;
      const length = Math.min(cs - (guest % cs), data.byteLength - pos);
      pieces.push({ host: m.hostOffset + (guest % cs), from: pos, to: pos + length });
      pos += length;
    }
    const out = new WriteCoalescer(this.file);
    for (const p of pieces) await out.put(p.host, data.subarray(p.from, p.to));
    await out.flush();
    return true;
  }

  private checkWritable(): void {
    if (this.readOnly) throw new BlockError(`${this.path}: image is open read-only`);
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

  async writeUnlocked(offset: number, data: Uint8Array): Promise<void> {
    await this.beforeFirstWrite();
    const cs = this.clusterSize;
    let pos = 0;
    while (pos < data.byteLength) {
      const pending: PendingWrite[] = [];
      const decrements: number[] = [];
      let allocations = 0;
      while (pos < data.byteLength && allocations < MAX_CLUSTERS_PER_ROUND) {
        const guest = offset + pos;
        const cluster = Math.floor(guest / cs);
        const from = guest % cs;
        const to = Math.min(cs, from + data.byteLength - pos);
        const { table, index } = await this.ownedL2(cluster, decrements);
        const mapping = decodeL2(getEntry(table, index), this.header.clusterBits, this.header.version);
        if (!(mapping.kind === 'data' && mapping.copied)) allocations++;
        pending.push({ cluster, mapping, table, index, from, to, source: pos });
        pos += to - from;
      }
      await this.applyWrites(pending, data, allocations, decrements);
      await this.limitDirtyMetadata();
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

  private async applyWrites(pending: PendingWrite[], data: Uint8Array, allocations: number, decrements: number[]): Promise<void> {
    const cs = this.clusterSize;
    const hosts: { offset: number; unwritten: boolean }[] = [];
    for (const run of allocations > 0 ? await this.refcounts.allocateExtents(allocations) : []) {
      for (let i = 0; i < run.count; i++) hosts.push({ offset: run.offset + i * cs, unwritten: run.fresh });
    }
    const fresh: { p: PendingWrite; host: number; unwritten: boolean }[] = [];
    const out = new WriteCoalescer(this.file);
    for (const p of pending) {
      if (p.mapping.kind === 'data' && p.mapping.copied) {
        await out.put(p.mapping.hostOffset + p.from, data.subarray(p.source, p.source + p.to - p.from));
        continue;
      }
      const host = hosts[fresh.length]!;
      fresh.push({ p, host: host.offset, unwritten: host.unwritten });
    }
    // New clusters: whole ones straight from `data`, partial ones assembled with the old content
    // around the written part.
    const assembled: Uint8Array[] = [];
    for (const { p, host, unwritten } of fresh) {
      const part = data.subarray(p.source, p.source + p.to - p.from);
      if (p.from === 0 && p.to === cs) {
        await out.put(host, part);
      } else if (unwritten && this.readsAsZeros(p.cluster, p.mapping)) {
        // A partial write into zeros, on a host cluster nothing was ever written to (it reads as
        // zeros): only the written part goes to the file, not a cluster of assembled zeros.
        await out.put(host + p.from, part);
      } else {
        const slot = this.scratch.pop() ?? new Uint8Array(cs);
        assembled.push(slot);
        await this.readOldCluster(p.cluster, p.mapping, slot);
        slot.set(part, p.from);
        await out.put(host, slot);
      }
    }
    await out.flush();
    // Written: the buffers serve the next copy-on-write (a fresh 64 KiB buffer per guest write
    // cost ~25 µs in allocation, zeroing and garbage collection).
    this.scratch.push(...assembled.slice(0, MAX_SCRATCH_CLUSTERS - this.scratch.length));
    // The data is in the file; the entries change in the cache only. Write-back makes the data
    // and refcounts durable before any table naming the new clusters reaches the file.
    for (const { p, host } of fresh) {
      setEntry(p.table, p.index, dataEntry(host, true));
      this.markL2Dirty(this.l2OffsetOf(p.cluster));
      decrements.push(...this.releasedClusters(p.mapping));
    }
    await this.release(decrements);
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

  /** True when guest cluster `cluster`, mapped by `m` in this image, reads as zeros throughout. */
  private readsAsZeros(cluster: number, m: ClusterMapping): boolean {
    if (m.kind === 'zero') return true;
    return m.kind === 'unallocated' && (this.backing === null || cluster * this.clusterSize >= this.backing.size);
  }

  /** The current guest content of a whole cluster, from wherever it lives. */
  private async readOldCluster(cluster: number, m: ClusterMapping, into: Uint8Array): Promise<void> {
    const guest = cluster * this.clusterSize;
    const length = Math.min(this.clusterSize, this.size - guest);
    into.fill(0);
    await this.readMapped(guest, m, into.subarray(0, length));
  }

  async writeZeroes(offset: number, length: number, unmap: boolean): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, length);
    await this.lock.exclusive(() => this.zeroUnlocked(offset, length, unmap ? 'zero-unmap' : 'zero'));
  }

  async discard(offset: number, length: number): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, length);
    await this.lock.exclusive(() => this.zeroUnlocked(offset, length, 'discard'));
  }

  /** Zeroing, discarding and unallocating ranges (zeroing.ts); the caller holds the exclusive lock. */
  async zeroUnlocked(offset: number, length: number, how: ZeroMode): Promise<void> {
    await zeroRange(this, offset, length, how);
  }

  /** Writes cached metadata back in crash-safe order and makes every completed write durable. */
  async flush(): Promise<void> {
    if (!this.readOnly) await this.lock.exclusive(() => this.flushUnlocked());
  }

  /** flush() for a caller that holds the exclusive lock. */
  /**
   * Stores the guest cluster at `offset` (cluster-aligned, not yet allocated; `data` is the
   * cluster, shorter only at the end of the disk) as raw deflate with a 4 KiB window, which is
   * what QEMU writes and reads, packed byte by byte after the previous compressed cluster as
   * QEMU packs them. Returns false, having written it the normal way, when compression would not
   * save at least one 512-byte sector.
   */
  async writeCompressed(offset: number, data: Uint8Array): Promise<boolean> {
    this.checkWritable();
    const cs = this.clusterSize;
    if (offset % cs !== 0 || data.byteLength !== Math.min(cs, this.size - offset)) {
      throw new BlockError(`${this.path}: a compressed write covers exactly one cluster (offset ${offset}, ${data.byteLength} bytes)`);
    }
    let cluster = data;
    if (data.byteLength < cs) {
      cluster = new Uint8Array(cs);
      cluster.set(data);
    }
    const packed = deflateRawSync(cluster, { windowBits: 12 });
    if (packed.byteLength > cs - 512) {
      await this.write(offset, data);
      return false;
    }
    await this.lock.exclusive(async () => {
      await this.beforeFirstWrite();
      const decrements: number[] = [];
      const { table, index, offset: l2 } = await this.ownedL2(offset / cs, decrements);
      if (decodeL2(getEntry(table, index), this.header.clusterBits, this.header.version).kind !== 'unallocated') {
        throw new BlockError(`${this.path}: compressed writes go to unallocated clusters only (guest offset ${offset})`);
      }
      const host = await this.allocateCompressedBytes(packed.byteLength);
      await this.file.writeAt(host, packed);
      setEntry(table, index, compressedEntry(host, packed.byteLength, this.header.clusterBits));
      this.markL2Dirty(l2);
      await this.release(decrements);
      await this.limitDirtyMetadata();
    });
    return true;
  }

  /**
   * `length` bytes for compressed data: right after the previous compressed cluster when they fit
   * in the host cluster it ends in (which then gains a reference), else at the start of newly
   * allocated clusters (one reference each), as the refcounts of compressed clusters count.
   */
  private async allocateCompressedBytes(length: number): Promise<number> {
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

  /**
   * Grows the virtual disk to `newSize` bytes (the new part reads as zeros). When the L1 table
   * must grow it moves to new clusters: the new table and its refcounts are made durable, then one
   * header write switches size, L1 size and L1 offset together, then the old table is released.
   * A crash at any point leaves the old or the new image, at worst with leaked clusters.
   */
  async grow(newSize: number): Promise<void> {
    this.checkWritable();
    if (!Number.isSafeInteger(newSize) || newSize % 512 !== 0) throw new BlockError(`${this.path}: the new size ${newSize} is not a multiple of 512 bytes`);
    if (newSize < this.size) throw new BlockError(`${this.path}: ${newSize} bytes is smaller than the image (${this.size}); growing only`);
    if (newSize === this.size) return;
    await this.lock.exclusive(async () => {
      await this.beforeFirstWrite();
      await this.barrier();
      const header = new Uint8Array(24); // size u64, crypt_method u32, l1_size u32, l1_table_offset u64
      const view = new DataView(header.buffer);
      const neededL1 = Math.ceil(newSize / (this.clusterSize * this.l2Entries));
      const oldL1 = { offset: this.header.l1TableOffset, clusters: Math.ceil((this.header.l1Size * 8) / this.clusterSize) };
      let l1 = this.l1;
      let l1Offset = this.header.l1TableOffset;
      if (neededL1 > this.header.l1Size) {
        if (neededL1 > L1_MAX_ENTRIES) throw new BlockError(`${this.path}: ${newSize} bytes needs ${neededL1} L1 entries, more than qcow2 allows (${L1_MAX_ENTRIES})`);
        const clusters = Math.ceil((neededL1 * 8) / this.clusterSize);
        l1Offset = await this.refcounts.allocate(clusters);
        const table = new Uint8Array(clusters * this.clusterSize);
        table.set(this.l1);
        await this.file.writeAt(l1Offset, table);
        l1 = table.subarray(0, neededL1 * 8);
        await this.barrier(); // the new table and its refcounts before the header names them
      }
      view.setBigUint64(0, BigInt(newSize), false);
      view.setUint32(8, this.header.cryptMethod, false);
      view.setUint32(12, Math.max(neededL1, this.header.l1Size), false);
      view.setBigUint64(16, BigInt(l1Offset), false);
      await this.file.writeAt(HDR_SIZE, header);
      await this.sync();
      const moved = l1Offset !== this.header.l1TableOffset;
      this.header.size = newSize;
      this.header.l1Size = Math.max(neededL1, this.header.l1Size);
      this.header.l1TableOffset = l1Offset;
      this.l1 = l1;
      if (moved && oldL1.offset !== 0) {
        for (let c = 0; c < oldL1.clusters; c++) await this.release([oldL1.offset / this.clusterSize + c]);
        await this.barrier();
      }
    });
  }

  async flushUnlocked(): Promise<void> {
    if (this.readOnly) return;
    await this.writeBackMetadata();
    await this.file.datasync();
  }

  async close(): Promise<void> {
    if (!this.readOnly) await this.flush();
    this.closed = true;
    this.cancelWriteBackTimer();
    await this.file.close();
    await this.backing?.close();
  }
}

/** A backing file name resolved the way QEMU does: relative names against the overlay's folder. */
export function resolveBackingPath(overlayPath: string, name: string): string {
  const plain = name.startsWith('file:') ? name.slice(5) : name;
  return isAbsolute(plain) ? plain : resolve(dirname(overlayPath), plain);
}

export { HDR_L1 };

/** Merges writes that are adjacent both in the file and in memory into one request. */
class WriteCoalescer {
  private host = 0;
  private bytes: Uint8Array | null = null;

  constructor(private readonly file: HostFile) {}

  async put(host: number, bytes: Uint8Array): Promise<void> {
    const b = this.bytes;
    if (b !== null && this.host + b.byteLength === host && b.buffer === bytes.buffer && b.byteOffset + b.byteLength === bytes.byteOffset) {
      this.bytes = new Uint8Array(b.buffer, b.byteOffset, b.byteLength + bytes.byteLength);
      return;
    }
    await this.flush();
    this.host = host;
    this.bytes = bytes;
  }

  async flush(): Promise<void> {
    const b = this.bytes;
    if (b === null) return;
    this.bytes = null;
    await this.file.writeAt(this.host, b);
  }
}
