import { BlockError, type BlockBackend } from '../backend.js';
import { HostFile } from './host-file.js';

/**
 * The minimal raw-file BlockBackend qcow2 needs for raw backing files and raw convert output.
 * (src/devices/block/raw.ts is the VM-facing raw backend; this one is what the image engine and
 * tsvmm-img use, and can be merged with it.)
 */
export class RawFile implements BlockBackend {
  readonly format = 'raw';

  private constructor(readonly path: string, readonly file: HostFile, public size: number, readonly readOnly: boolean) {}

  static async open(path: string, readOnly: boolean): Promise<RawFile> {
    const file = await HostFile.open(path, !readOnly);
    return new RawFile(path, file, await file.length(), readOnly);
  }

  /** Creates (or truncates) a sparse raw file of `size` bytes. */
  static async create(path: string, size: number): Promise<RawFile> {
    const file = await HostFile.open(path, true, true);
    await file.truncate(size);
    return new RawFile(path, file, size, false);
  }

  private check(offset: number, length: number, write: boolean): void {
    if (write && this.readOnly) throw new BlockError(`${this.path}: image is open read-only`);
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new BlockError(`${this.path}: request [${offset}, +${length}) is outside the ${this.size}-byte disk`);
    }
  }

  /** Whether [offset, offset+length) starts with data or a hole (SEEK_DATA/SEEK_HOLE), and how far. */
  async allocationAt(offset: number, maxLength: number): Promise<{ data: boolean; length: number }> {
    // libc (koffi) loads lazily: most users of this class never ask, and loading it costs ~100 ms.
    const { SEEK_DATA, SEEK_HOLE, lseek } = await import('../../../sys/libc.js');
    const end = Math.min(this.size, offset + maxLength);
    const data = lseek(this.file.fd, offset, SEEK_DATA);
    if (data === -1 || data >= end) return { data: false, length: end - offset };
    if (data > offset) return { data: false, length: data - offset };
    const hole = lseek(this.file.fd, offset, SEEK_HOLE);
    return { data: true, length: Math.min(end, hole === -1 ? end : hole) - offset };
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    this.check(offset, into.byteLength, false);
    await this.file.readAt(offset, into);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.check(offset, data.byteLength, true);
    await this.file.writeAt(offset, data);
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await this.file.datasync();
  }

  async discard(offset: number, length: number): Promise<void> {
    this.check(offset, length, true);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    this.check(offset, length, true);
    const chunk = new Uint8Array(Math.min(length, 1024 * 1024));
    for (let at = 0; at < length; at += chunk.byteLength) {
      await this.file.writeAt(offset + at, chunk.subarray(0, Math.min(chunk.byteLength, length - at)));
    }
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}
