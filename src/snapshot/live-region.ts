import { writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { PageBitmap } from '../memory/page-bitmap.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, fallocateAsync } from '../sys/falloc.js';
import {
  IO_CHUNK, digestRegionFile, nonZeroRuns, normalizeExtents, writeFully, type ChecksumAlgorithm, type RegionWriteResult,
} from './sparse.js';

/**
 * A memory file written while the guest runs (live snapshots): a first copy of the whole region,
 * then any number of passes over the pages written since, each overwriting those pages in place
 * (a page that became zero becomes a hole again, so the file stays sparse). Reading guest RAM
 * that changes under the copy is fine: any page written after its dirty bit was taken is in the
 * next pass, and the last pass runs with the guest paused. The checksum is computed from the
 * finished file, because guest RAM has moved on by then. The copies check their `signal` before
 * each run: guest RAM must not be read once the VM is being torn down (its mapping goes away).
 */
export interface CopyOptions {
  /** Checked before each run: once aborted, guest RAM is not read again. */
  signal?: AbortSignal;
  /** copyDirty only: write on the calling thread (see there). */
  blocking?: boolean;
}

export class LiveRegionFile {
  private constructor(private readonly fh: FileHandle, readonly path: string, readonly size: number) {}

  /** Creates `path` (which must not exist) as a sparse file of `size` bytes. */
  static async create(path: string, size: number): Promise<LiveRegionFile> {
    // Read back at the end for the checksum: opened for both.
    const fh = await open(path, 'wx+', 0o644);
    try {
      await fh.truncate(size);
    } catch (e) {
      await fh.close();
      throw e;
    }
    return new LiveRegionFile(fh, path, size);
  }

  /**
   * The first copy: every non-zero page of `bytes` inside `dataExtents` (all of it without them).
   * The file is still all holes, so zero pages need no write. Returns the bytes written.
   */
  async copyAll(bytes: Uint8Array, dataExtents?: ReadonlyArray<readonly [number, number]>, { signal }: CopyOptions = {}): Promise<number> {
    this.checkView(bytes);
    let written = 0;
    for (const [extOff, extLen] of normalizeExtents(dataExtents, this.size)) {
      for (const [off, len] of nonZeroRuns(bytes, extOff, extOff + extLen)) {
        signal?.throwIfAborted();
        await writeFully(this.fh, bytes, off, len);
        written += len;
      }
    }
    return written;
  }

  /**
   * Copies the pages `dirty` marks again: non-zero ones written, zero ones punched out. Returns
   * the bytes written. `blocking`: write on this thread instead of the pool — for the pass made
   * while the guest is paused, where nothing else waits for this thread and a few scattered
   * pages would each pay a thread-pool round trip.
   */
  async copyDirty(bytes: Uint8Array, dirty: PageBitmap, { signal, blocking = false }: CopyOptions = {}): Promise<number> {
    this.checkView(bytes);
    if (dirty.size !== this.size) throw new RangeError(`dirty bitmap of ${dirty.size} bytes for a region of ${this.size}`);
    let written = 0;
    for (const [runOff, runLen] of dirty.runs(IO_CHUNK)) {
      signal?.throwIfAborted();
      let at = runOff;
      for (const [off, len] of nonZeroRuns(bytes, runOff, runOff + runLen)) {
        if (off > at) await this.punch(at, off - at);
        if (blocking) writeFullySync(this.fh.fd, bytes, off, len);
        else await writeFully(this.fh, bytes, off, len);
        written += len;
        at = off + len;
      }
      if (at < runOff + runLen) await this.punch(at, runOff + runLen - at);
    }
    return written;
  }

  /** fsyncs the file, computes its page digest from what it now holds, and closes it. */
  async finish(algorithm: ChecksumAlgorithm): Promise<RegionWriteResult> {
    try {
      await this.fh.sync();
      const d = await digestRegionFile(this.fh, this.size, algorithm, this.path);
      return { dataBytes: d.dataBytes, checksum: d.checksum };
    } finally {
      await this.fh.close();
    }
  }

  /** Closes the file without finishing it (the caller removes the staging directory). */
  async abandon(): Promise<void> {
    await this.fh.close().catch(() => undefined);
  }

  private checkView(bytes: Uint8Array): void {
    if (bytes.byteLength !== this.size) throw new RangeError(`a view of ${bytes.byteLength} bytes for a region of ${this.size}`);
  }

  private punch(offset: number, length: number): Promise<void> {
    return fallocateAsync(this.fh.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
  }
}

function writeFullySync(fd: number, bytes: Uint8Array, offset: number, length: number): void {
  for (let done = 0; done < length;) {
    const n = writeSync(fd, bytes, offset + done, length - done, offset + done);
    if (n <= 0) throw new Error(`write made no progress at offset ${offset + done}`);
    done += n;
  }
}
