import { TsvmmError } from '../errors.js';
import { PageBitmap } from './page-bitmap.js';

/** A guest access that falls outside guest RAM, or spans a gap between regions. */
export class GuestMemoryError extends TsvmmError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('EGUESTMEM', message, details);
  }
}

/**
 * One contiguous range of guest-physical RAM, backed by host memory that `bytes` views.
 * `hostAddress` is the address of the mapping in this process (the same in every thread), so
 * worker threads can build their own views of the very same pages (see `GuestMemory.describe`).
 */
export interface GuestRegion {
  readonly index: number;
  readonly guestBase: number;
  readonly size: number;
  readonly hostAddress: bigint;
  readonly bytes: Uint8Array;
}

/** Plain, structured-clone-safe description of the region table for other threads. */
export interface GuestMemoryDescriptor {
  readonly regions: ReadonlyArray<{ index: number; guestBase: number; size: number; hostAddress: bigint }>;
}

/**
 * Guest-physical memory: a validated, sorted, non-overlapping list of regions, with bounds
 * checks as the API. Guest addresses are JS numbers (exact up to 2^53, far above any RAM size).
 * Every address and length coming from the guest goes through `checkRange`/`slice`, which throw
 * GuestMemoryError instead of touching anything outside RAM.
 */
export class GuestMemory {
  readonly regions: readonly GuestRegion[];
  /** DataViews made on first access to each region (see MappedRegion.bytes). */
  private readonly views: Array<DataView | undefined>;
  /**
   * While a dirty log runs (live snapshot, migration): per region, the pages the VMM itself wrote
   * since the last `takeDirty`. KVM only sees the guest's writes; these are the device writes
   * (virtio used rings, disk reads, received frames) it would otherwise miss.
   */
  private dirty: PageBitmap[] | null = null;

  constructor(regions: readonly GuestRegion[]) {
    const sorted = [...regions].sort((a, b) => a.guestBase - b.guestBase);
    for (let i = 0; i < sorted.length; i++) {
      const r = sorted[i]!;
      if (!Number.isSafeInteger(r.size) || r.size <= 0) throw new GuestMemoryError(`region ${r.index} has an invalid size ${r.size}`);
      const prev = sorted[i - 1];
      if (prev !== undefined && prev.guestBase + prev.size > r.guestBase) {
        throw new GuestMemoryError(`regions ${prev.index} and ${r.index} overlap`);
      }
    }
    if (sorted.length === 0) throw new GuestMemoryError('guest memory needs at least one region');
    this.regions = sorted;
    this.views = sorted.map(() => undefined);
  }

  /** Total RAM in bytes. */
  get totalSize(): number {
    return this.regions.reduce((n, r) => n + r.size, 0);
  }

  describe(): GuestMemoryDescriptor {
    return {
      regions: this.regions.map((r) => ({ index: r.index, guestBase: r.guestBase, size: r.size, hostAddress: r.hostAddress })),
    };
  }

  /** Starts recording the pages the VMM writes (see `dirty`); a log already running restarts empty. */
  startDirtyLog(): void {
    this.dirty = this.regions.map((r) => new PageBitmap(r.size));
  }

  stopDirtyLog(): void {
    this.dirty = null;
  }

  /**
   * The pages the VMM wrote since the log started or was last taken, per region (in `regions`
   * order), and a fresh log from now on. Throws when no log runs.
   */
  takeDirty(): PageBitmap[] {
    const taken = this.dirty;
    if (taken === null) throw new GuestMemoryError('no dirty log is running');
    this.dirty = this.regions.map((r) => new PageBitmap(r.size));
    return taken;
  }

  /**
   * Records a VMM write into [gpa, gpa+len) made through a `slice` view (the other write methods
   * record their own). Call it once the write is done — after an asynchronous read into guest
   * memory completes, not when it starts — so a log taken in between cannot miss it.
   */
  markDirty(gpa: number, len: number): void {
    if (this.dirty === null || len <= 0) return;
    const i = this.locate(gpa, len);
    this.dirty[i]!.setRange(gpa - this.regions[i]!.guestBase, len);
  }

  /** Index into `regions` of the region holding [gpa, gpa+len), or -1. */
  private find(gpa: number, len: number): number {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(len) || gpa < 0 || len < 0) return -1;
    const rs = this.regions;
    for (let i = 0; i < rs.length; i++) {
      const r = rs[i]!;
      if (gpa >= r.guestBase && gpa + len <= r.guestBase + r.size) return i;
    }
    return -1;
  }

  private locate(gpa: number, len: number): number {
    const i = this.find(gpa, len);
    if (i < 0) {
      throw new GuestMemoryError(`guest range 0x${gpa.toString(16)}+0x${len.toString(16)} is not inside guest RAM`, { gpa, len });
    }
    return i;
  }

  /** True when [gpa, gpa+len) lies inside one region. */
  contains(gpa: number, len: number): boolean {
    return this.find(gpa, len) >= 0;
  }

  /** Throws GuestMemoryError unless [gpa, gpa+len) lies inside one region. */
  checkRange(gpa: number, len: number): void {
    this.locate(gpa, len);
  }

  /**
   * A live view (no copy) of [gpa, gpa+len); writes through it reach the guest, and whoever
   * writes through it calls `markDirty` afterwards.
   */
  slice(gpa: number, len: number): Uint8Array {
    const r = this.regions[this.locate(gpa, len)]!;
    const off = gpa - r.guestBase;
    return r.bytes.subarray(off, off + len);
  }

  read(gpa: number, len: number): Uint8Array {
    return this.slice(gpa, len).slice();
  }

  write(gpa: number, data: Uint8Array): void {
    this.writableSlice(gpa, data.byteLength).set(data);
  }

  fill(gpa: number, len: number, value = 0): void {
    this.writableSlice(gpa, len).fill(value);
  }

  /** `slice` for a write the caller makes at once: one region lookup, logged if a log runs. */
  private writableSlice(gpa: number, len: number): Uint8Array {
    const i = this.locate(gpa, len);
    const r = this.regions[i]!;
    const off = gpa - r.guestBase;
    // Marked before the store: the caller stores synchronously, before any log can be taken.
    if (this.dirty !== null && len > 0) this.dirty[i]!.setRange(off, len);
    return r.bytes.subarray(off, off + len);
  }

  private dv(gpa: number, len: number, writing = false): [DataView, number] {
    const i = this.locate(gpa, len);
    const r = this.regions[i]!;
    let v = this.views[i];
    if (v === undefined) {
      v = new DataView(r.bytes.buffer, r.bytes.byteOffset, r.size);
      this.views[i] = v;
    }
    // As in writableSlice.
    if (writing && this.dirty !== null) this.dirty[i]!.setRange(gpa - r.guestBase, len);
    return [v, gpa - r.guestBase];
  }

  readU8(gpa: number): number { const [v, o] = this.dv(gpa, 1); return v.getUint8(o); }
  readU16(gpa: number): number { const [v, o] = this.dv(gpa, 2); return v.getUint16(o, true); }
  readU32(gpa: number): number { const [v, o] = this.dv(gpa, 4); return v.getUint32(o, true); }
  readU64(gpa: number): bigint { const [v, o] = this.dv(gpa, 8); return v.getBigUint64(o, true); }
  writeU8(gpa: number, x: number): void { const [v, o] = this.dv(gpa, 1, true); v.setUint8(o, x); }
  writeU16(gpa: number, x: number): void { const [v, o] = this.dv(gpa, 2, true); v.setUint16(o, x, true); }
  writeU32(gpa: number, x: number): void { const [v, o] = this.dv(gpa, 4, true); v.setUint32(o, x, true); }
  writeU64(gpa: number, x: bigint): void { const [v, o] = this.dv(gpa, 8, true); v.setBigUint64(o, x, true); }
}

/** Builds a GuestMemory over plain JS buffers: for unit tests and pure logic, no mmap. */
export function anonymousGuestMemory(layout: ReadonlyArray<{ guestBase: number; size: number }>): GuestMemory {
  return new GuestMemory(
    layout.map((l, index) => ({ index, guestBase: l.guestBase, size: l.size, hostAddress: 0n, bytes: new Uint8Array(l.size) })),
  );
}
