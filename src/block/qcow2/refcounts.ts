import { HDR_REFCOUNT_TABLE } from './format.js';
import { Qcow2Error } from './errors.js';
import type { HostFile } from '../host-file.js';

const CACHE_BYTES = 8 * 1024 * 1024;

/** Reads entry `i` of a refcount block whose entries are `bits` wide (sub-byte: LSB first). */
export function readRefcount(block: Uint8Array, i: number, bits: number): number {
  if (bits < 8) {
    const bit = i * bits;
    return (block[bit >> 3]! >> (bit & 7)) & ((1 << bits) - 1);
  }
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  if (bits === 8) return block[i]!;
  if (bits === 16) return view.getUint16(i * 2, false);
  if (bits === 32) return view.getUint32(i * 4, false);
  return view.getUint32(i * 8, false) * 2 ** 32 + view.getUint32(i * 8 + 4, false);
}

export function writeRefcount(block: Uint8Array, i: number, bits: number, value: number): void {
  if (bits < 8) {
    const bit = i * bits;
    const mask = ((1 << bits) - 1) << (bit & 7);
    block[bit >> 3] = (block[bit >> 3]! & ~mask) | ((value << (bit & 7)) & mask);
    return;
  }
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  if (bits === 8) block[i] = value;
  else if (bits === 16) view.setUint16(i * 2, value, false);
  else if (bits === 32) view.setUint32(i * 4, value, false);
  else {
    view.setUint32(i * 8, Math.floor(value / 2 ** 32), false);
    view.setUint32(i * 8 + 4, value >>> 0, false);
  }
}

/** Byte range of a block that holds entry `i` (for writing back only what changed). */
function entryBytes(i: number, bits: number): [number, number] {
  const first = Math.floor((i * bits) / 8);
  return [first, first + Math.max(1, bits / 8)];
}

interface CachedBlock {
  data: Uint8Array;
  dirtyLo: number;
  dirtyHi: number;
}

/**
 * The two-level refcount structure: a contiguous table of block offsets and one-cluster blocks.
 * Changes stay in the cache until `writeBack()`, which the image calls at its ordering points
 * (refcount increments are durable before anything references the clusters; decrements are only
 * made once nothing durable references them, so a dirty block may be written at any time). Allocation places new
 * refcount blocks inside the range they describe, and grows the table by writing a larger copy at
 * the end of the file, switching the header to it, and only then freeing the old one.
 */
export class RefcountStore {
  readonly bits: number;
  readonly entriesPerBlock: number;
  readonly maxRefcount: number;
  private readonly clusterSize: number;
  private readonly blocks = new Map<number, CachedBlock>();
  /** Offsets of blocks with changes not yet written (the image bounds their number). */
  private readonly dirtyBlocks = new Set<number>();
  private tableDirtyLo = Infinity;
  private tableDirtyHi = -1;
  /** A block was placed this round: blocks must be durable before the table names them. */
  private placedBlocks = false;
  /** Lowest cluster that may be free. */
  private hint = 0;

  constructor(
    private readonly file: HostFile,
    readonly clusterBits: number,
    refcountOrder: number,
    public tableOffset: number,
    public tableClusters: number,
    private table: Uint8Array,
    /** First cluster past everything known to be in use (file end, allocations not yet written). */
    public endCluster: number,
    /** Makes completed writes durable; a no-op for images whose crash safety does not matter. */
    private readonly barrier: () => Promise<void>,
  ) {
    this.bits = 2 ** refcountOrder;
    this.clusterSize = 2 ** clusterBits;
    this.entriesPerBlock = (this.clusterSize * 8) / this.bits;
    this.maxRefcount = this.bits === 64 ? Number.MAX_SAFE_INTEGER : 2 ** this.bits - 1;
  }

  static async load(file: HostFile, clusterBits: number, order: number, tableOffset: number, tableClusters: number,
    barrier: () => Promise<void>): Promise<RefcountStore> {
    const table = new Uint8Array(tableClusters * 2 ** clusterBits);
    await file.readAt(tableOffset, table);
    const end = Math.ceil((await file.length()) / 2 ** clusterBits);
    return new RefcountStore(file, clusterBits, order, tableOffset, tableClusters, table, end, barrier);
  }

  get tableEntries(): number {
    return this.table.byteLength / 8;
  }

  /** Offset of refcount block `t`, 0 when not allocated. */
  blockOffset(t: number): number {
    if (t >= this.tableEntries) return 0;
    const v = new DataView(this.table.buffer).getBigUint64(t * 8, false);
    return Number(v & ~0x1ffn);
  }

  private setBlockOffset(t: number, offset: number): void {
    new DataView(this.table.buffer).setBigUint64(t * 8, BigInt(offset), false);
    this.tableDirtyLo = Math.min(this.tableDirtyLo, t * 8);
    this.tableDirtyHi = Math.max(this.tableDirtyHi, t * 8 + 8);
  }

  private async loadBlock(offset: number): Promise<CachedBlock> {
    const hit = this.blocks.get(offset);
    if (hit !== undefined) {
      this.blocks.delete(offset);
      this.blocks.set(offset, hit);
      return hit;
    }
    if (offset % this.clusterSize !== 0 || offset >= this.endCluster * this.clusterSize) {
      throw new Qcow2Error(`corrupt qcow2 image: refcount block at invalid offset ${offset}`);
    }
    const data = new Uint8Array(this.clusterSize);
    await this.file.readAt(offset, data);
    const block = { data, dirtyLo: Infinity, dirtyHi: -1 };
    this.blocks.set(offset, block);
    this.evict();
    return block;
  }

  /** Drops clean blocks, oldest first, while the cache is over budget. */
  private evict(): void {
    let excess = this.blocks.size * this.clusterSize - CACHE_BYTES;
    for (const [offset, b] of this.blocks) {
      if (excess <= 0 || this.blocks.size <= 2) break;
      if (b.dirtyHi >= 0) continue;
      this.blocks.delete(offset);
      excess -= this.clusterSize;
    }
  }

  /** The contents of the refcount block at `offset` (cached; do not modify). */
  async blockData(offset: number): Promise<Uint8Array> {
    return (await this.loadBlock(offset)).data;
  }

  async get(cluster: number): Promise<number> {
    const t = Math.floor(cluster / this.entriesPerBlock);
    const offset = this.blockOffset(t);
    if (offset === 0) return 0;
    return readRefcount((await this.loadBlock(offset)).data, cluster - t * this.entriesPerBlock, this.bits);
  }

  /** Sets a refcount; a missing refcount block is allocated first (at the end of the file). */
  async set(cluster: number, value: number): Promise<void> {
    if (value > this.maxRefcount || value < 0) {
      throw new Qcow2Error(`refcount of cluster ${cluster} would be ${value}, outside the ${this.bits}-bit refcount range`);
    }
    const t = Math.floor(cluster / this.entriesPerBlock);
    let offset = this.blockOffset(t);
    if (offset === 0) {
      if (value === 0) return;
      if (t >= this.tableEntries) await this.growTable(cluster + 1);
      offset = this.blockOffset(t);
      if (offset === 0) offset = await this.placeBlockAnywhere(t, this.endCluster);
    }
    const block = await this.loadBlock(offset);
    const index = cluster - t * this.entriesPerBlock;
    writeRefcount(block.data, index, this.bits, value);
    const [lo, hi] = entryBytes(index, this.bits);
    block.dirtyLo = Math.min(block.dirtyLo, lo);
    block.dirtyHi = Math.max(block.dirtyHi, hi);
    this.dirtyBlocks.add(offset);
    if (value === 0) this.hint = Math.min(this.hint, cluster);
    else this.endCluster = Math.max(this.endCluster, cluster + 1);
  }

  async adjust(cluster: number, delta: number): Promise<number> {
    const now = (await this.get(cluster)) + delta;
    if (now < 0) throw new Qcow2Error(`corrupt qcow2 image: refcount of cluster ${cluster} would drop below zero`);
    await this.set(cluster, now);
    return now;
  }

  /**
   * Allocates `n` contiguous clusters (refcount 1) and returns the byte offset of the first (for
   * tables that must be contiguous). Missing refcount blocks go after the run, not inside it.
   */
  async allocate(n: number): Promise<number> {
    for (;;) {
      const start = await this.findFree(n, this.hint);
      if (!(await this.ensureCovered(start, n, true))) continue;
      for (let c = start; c < start + n; c++) await this.set(c, 1);
      if (n === 1 || start === this.hint) this.hint = start + n;
      return start * this.clusterSize;
    }
  }

  /**
   * Allocates `n` clusters (refcount 1) in as few runs as the free space allows; guest data does
   * not need one contiguous run. Missing refcount blocks are placed at the start of their own range.
   * A run is `fresh` when it lies past everything ever in use (the file's end at open and every
   * allocation since): nothing was ever written there, so it reads as zeros.
   */
  async allocateExtents(n: number): Promise<{ offset: number; count: number; fresh: boolean }[]> {
    const out: { offset: number; count: number; fresh: boolean }[] = [];
    while (n > 0) {
      const run = await this.findRun(n, this.hint);
      if (!(await this.ensureCovered(run.start, run.count, false))) continue;
      const fresh = run.start >= this.endCluster;
      for (let c = run.start; c < run.start + run.count; c++) await this.set(c, 1);
      this.hint = run.start + run.count;
      out.push({ offset: run.start * this.clusterSize, count: run.count, fresh });
      n -= run.count;
    }
    return out;
  }

  /**
   * Makes sure refcount blocks exist for [start, start+n). Returns false when it changed the free
   * space (placed a block, grew the table), so the caller searches again.
   */
  private async ensureCovered(start: number, n: number, keepRunFree: boolean): Promise<boolean> {
    const E = this.entriesPerBlock;
    const lastT = Math.floor((start + n - 1) / E);
    if (lastT >= this.tableEntries) {
      await this.growTable(start + n);
      return false;
    }
    for (let t = Math.floor(start / E); t <= lastT; t++) {
      if (this.blockOffset(t) !== 0) continue;
      // A block describing its own cluster sits at the first cluster of the run in its range,
      // unless the run must stay contiguous: then it goes after the run.
      if (keepRunFree) await this.placeBlockAnywhere(t, Math.max(this.endCluster, start + n));
      else this.placeBlock(t, Math.max(start, t * E));
      return false;
    }
    return true;
  }

  private placeBlock(t: number, cluster: number): number {
    const E = this.entriesPerBlock;
    if (cluster < t * E || cluster >= (t + 1) * E) throw new Error('refcount block placed outside its own range');
    const data = new Uint8Array(this.clusterSize);
    const index = cluster - t * E;
    writeRefcount(data, index, this.bits, 1);
    this.addDirtyBlock(cluster * this.clusterSize, data);
    this.setBlockOffset(t, cluster * this.clusterSize);
    this.placedBlocks = true;
    this.endCluster = Math.max(this.endCluster, cluster + 1);
    return cluster * this.clusterSize;
  }

  /** A block for range `t` placed at a free cluster at or after `from` (maybe in another range). */
  private async placeBlockAnywhere(t: number, from: number): Promise<number> {
    for (;;) {
      const E = this.entriesPerBlock;
      const c = await this.findFree(1, from);
      if (Math.floor(c / E) === t) return this.placeBlock(t, c);
      if (!(await this.ensureCovered(c, 1, false))) continue;
      this.addDirtyBlock(c * this.clusterSize, new Uint8Array(this.clusterSize));
      await this.set(c, 1);
      this.setBlockOffset(t, c * this.clusterSize);
      this.placedBlocks = true;
      return c * this.clusterSize;
    }
  }

  /** The first free run at or after `from`: its start and length (1 to `n` clusters). */
  private async findRun(n: number, from: number): Promise<{ start: number; count: number }> {
    const start = await this.findFree(1, from);
    let count = 1;
    while (count < n && (await this.get(start + count)) === 0) count++;
    return { start, count };
  }

  /** First cluster of a run of `n` clusters with refcount 0, searching from `from`. */
  private async findFree(n: number, from: number): Promise<number> {
    const E = this.entriesPerBlock;
    let c = Math.max(from, 1);
    let runStart = c;
    let runLength = 0;
    while (runLength < n) {
      const t = Math.floor(c / E);
      const offset = this.blockOffset(t);
      if (offset === 0) {
        // No block: every cluster of its range is free.
        if (runLength === 0) runStart = c;
        const rangeEnd = t >= this.tableEntries ? Infinity : (t + 1) * E;
        const take = Math.min(n - runLength, rangeEnd - c);
        runLength += take;
        c += take;
        continue;
      }
      const block = await this.loadBlock(offset);
      for (let i = c - t * E; i < E && runLength < n; i++, c++) {
        if (readRefcount(block.data, i, this.bits) === 0) {
          if (runLength === 0) runStart = c;
          runLength++;
        } else runLength = 0;
      }
    }
    return runStart;
  }

  /**
   * Replaces the refcount table by a larger one covering clusters up to `needEnd` and beyond, laid
   * out at the end of the file together with the refcount blocks that describe that new area.
   */
  private async growTable(needEnd: number): Promise<void> {
    const E = this.entriesPerBlock;
    const perTableCluster = this.clusterSize / 8;
    const area = Math.max(this.endCluster, needEnd);
    let blockCount = 0;
    let tableClusters = 0;
    let newBlocks: number[] = [];
    for (;;) {
      const areaEnd = area + blockCount + tableClusters;
      const entriesNeeded = Math.ceil(Math.max(areaEnd, needEnd) / E) + 1;
      const entries = Math.max(entriesNeeded, this.tableEntries * 2);
      const nextTableClusters = Math.ceil(entries / perTableCluster);
      const nextEnd = area + blockCount + nextTableClusters;
      newBlocks = [];
      for (let t = Math.floor(area / E); t <= Math.floor((nextEnd - 1) / E); t++) if (this.blockOffset(t) === 0) newBlocks.push(t);
      if (newBlocks.length === blockCount && nextTableClusters === tableClusters) break;
      blockCount = newBlocks.length;
      tableClusters = nextTableClusters;
    }
    const newTable = new Uint8Array(tableClusters * this.clusterSize);
    newTable.set(this.table);
    const oldTableOffset = this.tableOffset;
    const oldTableClusters = this.tableClusters;
    this.table = newTable;
    newBlocks.forEach((t, i) => {
      const offset = (area + i) * this.clusterSize;
      this.addDirtyBlock(offset, new Uint8Array(this.clusterSize));
      this.setBlockOffset(t, offset);
    });
    const areaEnd = area + blockCount + tableClusters;
    this.endCluster = Math.max(this.endCluster, areaEnd);
    for (let c = area; c < areaEnd; c++) await this.set(c, 1);
    // New blocks and table first, durable; then the header switches to them; then the old table goes.
    await this.writeBlocks();
    this.tableOffset = (area + blockCount) * this.clusterSize;
    this.tableClusters = tableClusters;
    await this.file.writeAt(this.tableOffset, this.table);
    this.tableDirtyLo = Infinity;
    this.tableDirtyHi = -1;
    this.placedBlocks = false;
    await this.barrier();
    const field = new Uint8Array(12);
    const view = new DataView(field.buffer);
    view.setBigUint64(0, BigInt(this.tableOffset), false);
    view.setUint32(8, tableClusters, false);
    await this.file.writeAt(HDR_REFCOUNT_TABLE, field);
    await this.barrier();
    for (let i = 0; i < oldTableClusters; i++) await this.adjust(oldTableOffset / this.clusterSize + i, -1);
  }

  /** A new block (all of it to be written), cached as dirty. */
  private addDirtyBlock(offset: number, data: Uint8Array): void {
    this.blocks.set(offset, { data, dirtyLo: 0, dirtyHi: this.clusterSize });
    this.dirtyBlocks.add(offset);
  }

  /** Number of cached blocks with changes not yet written. */
  get dirtyBlockCount(): number {
    return this.dirtyBlocks.size;
  }

  private async writeBlocks(): Promise<boolean> {
    let wrote = false;
    // In offset order: dirty blocks written after a table growth sit next to each other.
    for (const offset of [...this.dirtyBlocks].sort((a, b) => a - b)) {
      const b = this.blocks.get(offset);
      if (b !== undefined && b.dirtyHi >= 0) {
        await this.file.writeAt(offset + b.dirtyLo, b.data.subarray(b.dirtyLo, b.dirtyHi));
        b.dirtyLo = Infinity;
        b.dirtyHi = -1;
        wrote = true;
      }
      this.dirtyBlocks.delete(offset);
    }
    return wrote;
  }

  /** Writes every changed block, then (after a barrier if blocks were placed) the table. */
  async writeBack(): Promise<boolean> {
    let wrote = await this.writeBlocks();
    if (this.tableDirtyHi >= 0) {
      if (this.placedBlocks) await this.barrier();
      await this.file.writeAt(this.tableOffset + this.tableDirtyLo, this.table.subarray(this.tableDirtyLo, this.tableDirtyHi));
      this.tableDirtyLo = Infinity;
      this.tableDirtyHi = -1;
      this.placedBlocks = false;
      wrote = true;
    }
    this.evict();
    return wrote;
  }

  /** Forgets cached blocks (after an external rewrite of refcounts). */
  resetHint(): void {
    this.hint = 0;
  }
}
