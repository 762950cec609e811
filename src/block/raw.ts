import { BlockError, type BlockBackend, type LayerStatus } from './backend.js';
import { HostFile } from './host-file.js';
import { lockImage } from './lock.js';

export interface RawOpenOptions {
  readOnly?: boolean;
  /**
   * Take the QEMU-compatible OFD image lock on this open (default false: the VM builder and
   * tsvmm-img lock the top image themselves, and backing files are opened read-only).
   */
  lock?: boolean;
}

const ZERO_CHUNK = 1 << 20;
const EOPNOTSUPP = 95;

/**
 * A raw disk image: guest byte n is file byte n. The size is the file's size when opened; bytes
 * inside `size` but past the current end of file (a shorter backing file, or a file another
 * process truncated) read as zeros. Discard punches holes (a hint: filesystems without hole
 * support keep the data); write-zeroes uses ZERO_RANGE or PUNCH_HOLE and falls back to writing
 * zeros. The fallocate and SEEK_DATA bindings load on first use: tsvmm-img verbs that never need
 * them do not pay for loading the C library bindings.
 */
export class RawBackend implements BlockBackend {
  readonly format = 'raw';
  readonly backing = null;
  private closed = false;

  private constructor(readonly path: string, readonly file: HostFile, private currentSize: number, readonly readOnly: boolean) {}

  get size(): number {
    return this.currentSize;
  }

  static async open(path: string, options: RawOpenOptions = {}): Promise<RawBackend> {
    const readOnly = options.readOnly ?? false;
    const file = await HostFile.open(path, !readOnly);
    try {
      if (!(await file.isRegularFile())) throw new BlockError(`disk image ${path} is not a regular file`, { path });
      if (options.lock === true) await lockImage(file.fd, path, readOnly ? 'read' : 'write');
      return new RawBackend(path, file, await file.length(), readOnly);
    } catch (e) {
      await file.close();
      throw e;
    }
  }

  /** Creates (or truncates) a sparse raw image of `size` bytes, open for writing. */
  static async create(path: string, size: number): Promise<RawBackend> {
    const file = await HostFile.open(path, true, true);
    await file.truncate(size);
    return new RawBackend(path, file, size, false);
  }

  /** The open file descriptor (for callers that take further locks or stat it). */
  get fd(): number {
    return this.file.fd;
  }

  private check(offset: number, length: number, op: string): void {
    if (this.closed) throw new BlockError(`${op} on closed disk image ${this.path}`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new BlockError(`${op} of ${length} bytes at ${offset} is outside disk image ${this.path} (${this.size} bytes)`, { offset, length });
    }
  }

  private checkWritable(op: string): void {
    if (this.readOnly) throw new BlockError(`${op} on read-only disk image ${this.path}`);
  }

  /** Data or hole (SEEK_DATA/SEEK_HOLE), and how far; a hole reads as zeros at its own offset. */
  async blockStatus(offset: number, maxLength: number): Promise<LayerStatus> {
    const { SEEK_DATA, SEEK_HOLE, lseek } = await import('../sys/libc.js');
    const end = Math.min(this.size, offset + maxLength);
    const data = lseek(this.fd, offset, SEEK_DATA);
    if (data === -1 || data >= end) return { kind: 'zero', length: end - offset, hostOffset: offset };
    if (data > offset) return { kind: 'zero', length: data - offset, hostOffset: offset };
    const hole = lseek(this.fd, offset, SEEK_HOLE);
    return { kind: 'data', length: Math.min(end, hole === -1 ? end : hole) - offset, hostOffset: offset };
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    this.check(offset, into.byteLength, 'read');
    await this.file.readAt(offset, into);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.checkWritable('write');
    this.check(offset, data.byteLength, 'write');
    await this.file.writeAt(offset, data);
  }

  async writev(offset: number, parts: Uint8Array[]): Promise<void> {
    this.checkWritable('write');
    this.check(offset, parts.reduce((n, p) => n + p.byteLength, 0), 'write');
    await this.file.writevAt(offset, parts);
  }

  async flush(): Promise<void> {
    if (this.closed) throw new BlockError(`flush on closed disk image ${this.path}`);
    if (!this.readOnly) await this.file.datasync();
  }

  /** fallocate(mode) on the pool; false when the file system cannot do it. */
  private async fallocate(mode: number, offset: number, length: number, op: string): Promise<boolean> {
    const { fallocateAsync } = await import('../sys/falloc.js');
    const { SysError } = await import('../sys/errno.js');
    try {
      await fallocateAsync(this.fd, mode, offset, length);
      return true;
    } catch (e) {
      if (e instanceof SysError && e.errno === EOPNOTSUPP) return false;
      throw new BlockError(`${op} on disk image ${this.path} failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  async discard(offset: number, length: number): Promise<void> {
    this.checkWritable('discard');
    this.check(offset, length, 'discard');
    if (length === 0) return;
    const { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } = await import('../sys/falloc.js');
    // Discard is only a hint: a file system without hole punching keeps the data.
    await this.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length, 'discard');
  }

  async writeZeroes(offset: number, length: number, unmap: boolean): Promise<void> {
    this.checkWritable('write-zeroes');
    this.check(offset, length, 'write-zeroes');
    if (length === 0) return;
    const { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE } = await import('../sys/falloc.js');
    const mode = unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
    if (await this.fallocate(mode, offset, length, 'write-zeroes')) return;
    const zeros = new Uint8Array(Math.min(ZERO_CHUNK, length));
    for (let done = 0; done < length; done += zeros.byteLength) {
      await this.file.writeAt(offset + done, zeros.subarray(0, Math.min(zeros.byteLength, length - done)));
    }
  }

  /** Truncates the file to `newSize` (a grown tail is a hole, reading as zeros) and syncs it. */
  async resize(newSize: number): Promise<void> {
    this.checkWritable('resize');
    if (this.closed) throw new BlockError(`resize of closed disk image ${this.path}`);
    if (!Number.isSafeInteger(newSize) || newSize < 0) throw new BlockError(`${this.path}: ${newSize} is not a size in bytes`);
    await this.file.truncate(newSize);
    await this.file.datasync();
    this.currentSize = newSize;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.file.close();
  }
}
