import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { TsvmmError } from '../errors.js';
import { SysError, ENOMEM } from '../sys/errno.js';
import {
  close, ftruncate, madvise, memfdCreate, mmap, munmap, open, viewAt, MADV_POPULATE_READ, MAP_NORESERVE, MAP_PRIVATE,
  MAP_SHARED, MAX_VIEW_BYTES, O_RDONLY, PROT_READ, PROT_WRITE,
} from '../sys/libc.js';
import { GuestMemory, type GuestMemoryDescriptor, type GuestRegion } from './guest-memory.js';
import { MiB, ramLayout } from './layout.js';

/** Guest RAM the host could not provide, or a backing file that cannot back the RAM asked for. */
export class GuestRamError extends TsvmmError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('EGUESTRAM', message, details);
  }
}

const PAGE = 4096;

/**
 * A guest RAM region mapped into this process. `memfd` is the anonymous file behind a fresh
 * region (SEEK_DATA/SEEK_HOLE on it finds the pages the guest touched, for sparse snapshots);
 * it is null for a region mapped privately from a snapshot file.
 */
export class MappedRegion implements GuestRegion {
  private view: Uint8Array | undefined;
  private unmapped = false;

  constructor(
    readonly index: number,
    readonly guestBase: number,
    readonly size: number,
    readonly hostAddress: bigint,
    readonly memfd: number | null,
  ) {}

  /**
   * The JS view of the region, made on first use: creating a multi-GiB external ArrayBuffer costs
   * milliseconds (V8 accounts it as external memory), which a restore that never touches guest
   * RAM from the VMM should not pay.
   */
  get bytes(): Uint8Array {
    this.view ??= new Uint8Array(viewAt(this.hostAddress, this.size));
    return this.view;
  }

  /**
   * Unmaps the RAM and closes the memfd. Every view of it (here and in workers) must be dead by
   * then: touching one afterwards is a segfault, not an exception.
   */
  /**
   * Maps [offset, offset+length) into this process for reading now, in one call instead of one
   * page fault per page (no copies: private pages stay shared with the file until written).
   */
  populate(offset: number, length: number): void {
    const start = Math.max(0, offset);
    const end = Math.min(this.size, offset + length);
    if (end <= start) return;
    try {
      madvise(this.hostAddress + BigInt(start), end - start, MADV_POPULATE_READ);
    } catch {
      // Kernels before 5.14: touch one byte per page instead (a read, so nothing is copied).
      for (let i = start; i < end; i += PAGE) void this.bytes[i];
    }
  }

  unmap(): void {
    if (this.unmapped) return;
    this.unmapped = true;
    munmap(this.hostAddress, this.size);
    if (this.memfd !== null) close(this.memfd);
  }
}

function checkSize(size: number, what: string): void {
  if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE !== 0) {
    throw new GuestRamError(`${what}: size ${size} must be a positive multiple of 4 KiB`);
  }
  // One ArrayBuffer views a whole region, and the runtime caps ArrayBuffers (see MAX_VIEW_BYTES).
  if (size > MAX_VIEW_BYTES) {
    throw new GuestRamError(`${what}: ${size / MiB} MiB exceeds the ${MAX_VIEW_BYTES / MiB} MiB a region can have in this Node.js (guest RAM is limited to 7 GiB)`);
  }
}

function ramFailure(e: unknown, bytes: number, step: string): unknown {
  if (!(e instanceof SysError)) return e;
  const mib = Math.ceil(bytes / MiB);
  const hint = e.errno === ENOMEM ? 'the host is out of memory or address space (check free memory, ulimit -v, vm.overcommit_memory)' : `${step} failed: ${e.errnoName}`;
  return new GuestRamError(`cannot allocate ${mib} MiB of guest RAM: ${hint}`, { errno: e.errno, step, bytes });
}

/** A fresh memfd of `size` bytes mapped MAP_SHARED | MAP_NORESERVE (`totalBytes` is for errors). */
function memfdRegion(index: number, guestBase: number, size: number, totalBytes: number): MappedRegion {
  let memfd: number;
  try {
    memfd = memfdCreate(`tsvmm-ram-${index}`);
  } catch (e) {
    throw ramFailure(e, totalBytes, 'memfd_create');
  }
  try {
    ftruncate(memfd, size);
    const address = mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, memfd, 0, `guest RAM region ${index}`);
    return new MappedRegion(index, guestBase, size, address, memfd);
  } catch (e) {
    close(memfd);
    throw ramFailure(e, totalBytes, 'ftruncate/mmap');
  }
}

/**
 * One memfd per RAM range of `ramLayout(ramBytes)`, each mmap'ed MAP_SHARED | MAP_NORESERVE: pages
 * cost nothing until the guest touches them. (Shared so the memfd sees the guest's writes.)
 */
export function createRamRegions(ramBytes: number): MappedRegion[] {
  if (!Number.isSafeInteger(ramBytes) || ramBytes <= 0 || ramBytes % PAGE !== 0) {
    throw new GuestRamError(`guest RAM size ${ramBytes} must be a positive multiple of 4 KiB`);
  }
  const ranges = ramLayout(ramBytes);
  for (const r of ranges) checkSize(r.size, `RAM region ${r.index}`);
  const made: MappedRegion[] = [];
  try {
    for (const r of ranges) made.push(memfdRegion(r.index, r.guestBase, r.size, ramBytes));
  } catch (e) {
    for (const m of made) m.unmap();
    throw e;
  }
  return made;
}

export interface PrivateMapOptions {
  /**
   * Read these [offset, length] ranges of the file in now instead of on the guest's first touch
   * (the rest of the file is holes, which read as zeros without any I/O).
   */
  prefaultExtents?: ReadonlyArray<readonly [number, number]>;
  /** Index recorded on the region (the snapshot's memory-region-N). */
  index?: number;
}

/**
 * Maps `size` bytes of a snapshot memory file MAP_PRIVATE at `guestBase`: pages are read lazily
 * and copied on the guest's first write, so the file is never modified and restore costs no copy.
 * The file must be at least `size` bytes: touching a page past its end would raise SIGBUS.
 */
export function mapFileRegionPrivate(path: string, guestBase: number, size: number, options: PrivateMapOptions = {}): MappedRegion {
  checkSize(size, path);
  let fileSize: number;
  try {
    fileSize = statSync(path).size;
  } catch (e) {
    throw new GuestRamError(`cannot map guest memory file ${path}: ${(e as Error).message}`, { path });
  }
  if (fileSize < size) {
    throw new GuestRamError(`guest memory file ${path} has ${fileSize} bytes, ${size} needed`, { path, fileSize, size });
  }
  let fd: number;
  try {
    fd = open(path, O_RDONLY);
  } catch (e) {
    throw new GuestRamError(`cannot open guest memory file ${path}: ${e instanceof SysError ? e.errnoName : String(e)}`, { path });
  }
  let region: MappedRegion;
  try {
    // A private writable mapping of a read-only fd is allowed: writes go to anonymous copies.
    // No MAP_POPULATE: on a writable private mapping it would copy every page, holes included.
    const address = mmap(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0, path);
    region = new MappedRegion(options.index ?? 0, guestBase, size, address, null);
  } catch (e) {
    throw ramFailure(e, size, `mmap of ${path}`);
  } finally {
    // The mapping keeps its own reference to the file.
    close(fd);
  }
  for (const [offset, length] of options.prefaultExtents ?? []) region.populate(offset, length);
  return region;
}

/** Largest single read: Node's fs reads take at most 2 GiB - 1 bytes at once. */
const MAX_READ_BYTES = 1 << 30;

/**
 * Fresh guest RAM (a memfd, as at boot) filled from `size` bytes of a snapshot memory file: only
 * `dataExtents` ([offset, length] ranges; the rest of the file is holes) are read, all of them now.
 * Restore pays the read, and afterwards the VM no longer depends on the file (Cloud Hypervisor's
 * `memory_restore_mode: Copy`); mapFileRegionPrivate is the lazy alternative.
 */
export function copyFileRegion(path: string, guestBase: number, size: number, dataExtents: ReadonlyArray<readonly [number, number]>, index = 0): MappedRegion {
  checkSize(size, path);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new GuestRamError(`cannot open guest memory file ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { path });
  }
  let region: MappedRegion | undefined;
  try {
    const fileSize = statSync(path).size;
    if (fileSize < size) throw new GuestRamError(`guest memory file ${path} has ${fileSize} bytes, ${size} needed`, { path, fileSize, size });
    region = memfdRegion(index, guestBase, size, size);
    const bytes = region.bytes;
    for (const [offset, length] of dataExtents) {
      if (offset < 0 || length < 0 || offset + length > size) throw new GuestRamError(`guest memory file ${path}: data extent [${offset}, +${length}) lies outside its ${size} bytes`, { path });
      for (let done = 0; done < length;) {
        const n = readSync(fd, bytes, offset + done, Math.min(length - done, MAX_READ_BYTES), offset + done);
        if (n === 0) throw new GuestRamError(`guest memory file ${path} ended at ${offset + done} bytes while reading it`, { path });
        done += n;
      }
    }
    return region;
  } catch (e) {
    region?.unmap();
    if (e instanceof GuestRamError) throw e;
    throw new GuestRamError(`cannot read guest memory file ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { path });
  } finally {
    closeSync(fd);
  }
}

/** A region viewed from another thread: same pages, no ownership (nothing to unmap). */
class AttachedRegion implements GuestRegion {
  readonly bytes: Uint8Array;

  constructor(readonly index: number, readonly guestBase: number, readonly size: number, readonly hostAddress: bigint) {
    this.bytes = new Uint8Array(viewAt(hostAddress, size));
  }
}

/**
 * Rebuilds a GuestMemory in a worker thread from `GuestMemory.describe()` of the main thread's
 * memory: the views alias the very same mapping. The main thread must keep the regions mapped
 * for as long as the worker uses them.
 */
export function attachGuestMemory(descriptor: GuestMemoryDescriptor): GuestMemory {
  return new GuestMemory(
    descriptor.regions.map((r) => {
      checkSize(r.size, `region ${r.index}`);
      if (typeof r.hostAddress !== 'bigint' || r.hostAddress === 0n) throw new GuestRamError(`region ${r.index} has no host address (not an mmap'ed region)`);
      return new AttachedRegion(r.index, r.guestBase, r.size, r.hostAddress);
    }),
  );
}

/** Unmaps every region; for the owner of the mappings, at VM teardown. */
export function unmapRegions(regions: readonly MappedRegion[]): void {
  for (const r of regions) r.unmap();
}

