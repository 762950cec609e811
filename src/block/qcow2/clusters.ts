import type { BlockBackend } from '../backend.js';
import { inflateRawSync, constants as zc } from 'node:zlib';
import { FLAG_COPIED, dataEntry, decodeL2, getEntry, setEntry, type ClusterMapping } from './entries.js';
import { Qcow2Error } from './errors.js';
import type { Qcow2Metadata } from './metadata.js';
import { WriteCoalescer } from './write-coalescer.js';

/** Largest number of clusters one write request allocates at once (bounds buffer sizes). */
const MAX_CLUSTERS_PER_ROUND = 4096;
/** Scratch cluster buffers kept for copy-on-write (a request has at most two partial clusters). */
const MAX_SCRATCH_CLUSTERS = 2;

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
 * Guest reads and writes of a qcow2 image, cluster by cluster, on its metadata core: reads follow
 * the mapping (data, zeros, backing file, compressed), writes go in place to clusters the image
 * alone owns or allocate new ones (copy-on-write of partial clusters). The caller holds the
 * metadata lock as each method says; `backing` is asked each time because a live chain edit may
 * replace it.
 */
export class ClusterIo {
  private lastCompressed: { offset: number; data: Uint8Array } | null = null;
  /** Cluster buffers for assembling copy-on-write clusters (used under the exclusive lock). */
  private readonly scratch: Uint8Array[] = [];

  constructor(private readonly meta: Qcow2Metadata, private readonly backing: () => BlockBackend | null) {}

  /** The image's backing file now (zeroing may drop clusters only where nothing shows through). */
  get backingImage(): BlockBackend | null {
    return this.backing();
  }

  async readUnlocked(offset: number, into: Uint8Array): Promise<void> {
    const cs = this.meta.clusterSize;
    let pos = 0;
    while (pos < into.byteLength) {
      const guest = offset + pos;
      const cluster = Math.floor(guest / cs);
      const m = await this.meta.lookup(cluster);
      let length = Math.min(cs - (guest % cs), into.byteLength - pos);
      // Extend over following clusters of the same contiguous kind: one host read for the run.
      let nextHost = m.kind === 'data' ? m.hostOffset + cs : 0;
      while (pos + length < into.byteLength && (m.kind === 'data' || m.kind === 'unallocated' || m.kind === 'zero')) {
        const n = await this.meta.lookup(Math.floor((guest + length) / cs));
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
  async readMapped(guest: number, m: ClusterMapping, part: Uint8Array): Promise<void> {
    switch (m.kind) {
      case 'data':
        await this.meta.file.readAt(m.hostOffset + (guest % this.meta.clusterSize), part);
        return;
      case 'zero':
        part.fill(0);
        return;
      case 'unallocated':
        await this.readBacking(guest, part);
        return;
      case 'compressed': {
        const data = await this.decompress(m);
        part.set(data.subarray(guest % this.meta.clusterSize, (guest % this.meta.clusterSize) + part.byteLength));
        return;
      }
    }
  }

  private async readBacking(guest: number, part: Uint8Array): Promise<void> {
    const backing = this.backing();
    const inBacking = backing === null ? 0 : Math.max(0, Math.min(part.byteLength, backing.size - guest));
    if (inBacking > 0) await backing!.read(guest, part.subarray(0, inBacking));
    part.fill(0, inBacking);
  }

  async decompress(m: { hostOffset: number; maxBytes: number }): Promise<Uint8Array> {
    if (this.lastCompressed?.offset === m.hostOffset) return this.lastCompressed.data;
    const raw = new Uint8Array(m.maxBytes);
    await this.meta.file.readAt(m.hostOffset, raw);
    let data: Uint8Array;
    try {
      data = inflateRawSync(raw, { finishFlush: zc.Z_SYNC_FLUSH, maxOutputLength: this.meta.clusterSize });
    } catch (err) {
      throw new Qcow2Error(`${this.meta.path}: corrupt compressed cluster at host offset ${m.hostOffset}: ${(err as Error).message}`);
    }
    if (data.byteLength !== this.meta.clusterSize) {
      throw new Qcow2Error(`${this.meta.path}: compressed cluster at host offset ${m.hostOffset} inflates to ${data.byteLength} bytes, not ${this.meta.clusterSize}`);
    }
    this.lastCompressed = { offset: m.hostOffset, data };
    return data;
  }

  /**
   * Writes `data` when every cluster it touches is a data cluster with COPIED set (refcount 1, so
   * no snapshot or other table shares it); otherwise writes nothing and returns false. The caller
   * holds the shared lock, so no mapping can change meanwhile.
   */
  async writeInPlace(offset: number, data: Uint8Array): Promise<boolean> {
    const cs = this.meta.clusterSize;
    const pieces: { host: number; from: number; to: number }[] = [];
    for (let pos = 0; pos < data.byteLength;) {
      const guest = offset + pos;
      const cluster = Math.floor(guest / cs);
      // The table must be this image's alone too: an entry's COPIED flag inside a table shared
      // with a snapshot would be a corruption, and the exclusive path copes with that.
      if (!(getEntry(this.meta.l1, Math.floor(cluster / this.meta.l2Entries)) & FLAG_COPIED)) return false;
      const m = await this.meta.lookup(cluster);
      if (m.kind !== 'data' || !m.copied) return false;
      const length = Math.min(cs - (guest % cs), data.byteLength - pos);
      pieces.push({ host: m.hostOffset + (guest % cs), from: pos, to: pos + length });
      pos += length;
    }
    const out = new WriteCoalescer(this.meta.file);
    for (const p of pieces) await out.put(p.host, data.subarray(p.from, p.to));
    await out.flush();
    return true;
  }

  async writeUnlocked(offset: number, data: Uint8Array): Promise<void> {
    await this.meta.beforeFirstWrite();
    const cs = this.meta.clusterSize;
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
        const { table, index } = await this.meta.ownedL2(cluster, decrements);
        const mapping = decodeL2(getEntry(table, index), this.meta.header.clusterBits, this.meta.header.version);
        if (!(mapping.kind === 'data' && mapping.copied)) allocations++;
        pending.push({ cluster, mapping, table, index, from, to, source: pos });
        pos += to - from;
      }
      await this.applyWrites(pending, data, allocations, decrements);
      await this.meta.limitDirtyMetadata();
    }
  }

  private async applyWrites(pending: PendingWrite[], data: Uint8Array, allocations: number, decrements: number[]): Promise<void> {
    const cs = this.meta.clusterSize;
    const hosts: { offset: number; unwritten: boolean }[] = [];
    for (const run of allocations > 0 ? await this.meta.refcounts.allocateExtents(allocations) : []) {
      for (let i = 0; i < run.count; i++) hosts.push({ offset: run.offset + i * cs, unwritten: run.fresh });
    }
    const fresh: { p: PendingWrite; host: number; unwritten: boolean }[] = [];
    const out = new WriteCoalescer(this.meta.file);
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
      this.meta.markL2Dirty(this.meta.l2OffsetOf(p.cluster));
      decrements.push(...this.meta.releasedClusters(p.mapping));
    }
    await this.meta.release(decrements);
  }

  /** True when guest cluster `cluster`, mapped by `m` in this image, reads as zeros throughout. */
  private readsAsZeros(cluster: number, m: ClusterMapping): boolean {
    if (m.kind === 'zero') return true;
    const backing = this.backing();
    return m.kind === 'unallocated' && (backing === null || cluster * this.meta.clusterSize >= backing.size);
  }

  /** The current guest content of a whole cluster, from wherever it lives. */
  private async readOldCluster(cluster: number, m: ClusterMapping, into: Uint8Array): Promise<void> {
    const guest = cluster * this.meta.clusterSize;
    const length = Math.min(this.meta.clusterSize, this.meta.size - guest);
    into.fill(0);
    await this.readMapped(guest, m, into.subarray(0, length));
  }
}
