/**
 * A pass-through BlockBackend that remembers which clusters the guest changed. An active
 * block-commit puts it under the device while it copies, so clusters the guest rewrites after
 * they were copied are copied again; marks are made when a write completes, after which any
 * copy that read the older data is superseded by the re-copy.
 */
import { BlockError, type BlockBackend, type ImageFormat, type LayerStatus } from '../../block/backend.js';

export class DirtyTracker implements BlockBackend {
  private readonly dirty = new Set<number>();

  constructor(readonly inner: BlockBackend, readonly clusterSize: number) {}

  get size(): number { return this.inner.size; }
  get readOnly(): boolean { return this.inner.readOnly; }
  get format(): ImageFormat { return this.inner.format; }
  get path(): string { return this.inner.path; }
  get backing(): BlockBackend | null { return this.inner.backing; }

  /** Clusters changed since the last `take()`, in ascending order; the set starts empty again. */
  take(): number[] {
    const out = [...this.dirty].sort((a, b) => a - b);
    this.dirty.clear();
    return out;
  }

  get dirtyCount(): number {
    return this.dirty.size;
  }

  private mark(offset: number, length: number): void {
    if (length <= 0) return;
    const last = Math.floor((offset + length - 1) / this.clusterSize);
    for (let c = Math.floor(offset / this.clusterSize); c <= last; c++) this.dirty.add(c);
  }

  blockStatus(offset: number, maxLength: number): Promise<LayerStatus> {
    return this.inner.blockStatus(offset, maxLength);
  }

  read(offset: number, into: Uint8Array): Promise<void> {
    return this.inner.read(offset, into);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    try {
      await this.inner.write(offset, data);
    } finally {
      this.mark(offset, data.byteLength);
    }
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  async discard(offset: number, length: number): Promise<void> {
    try {
      await this.inner.discard(offset, length);
    } finally {
      this.mark(offset, length);
    }
  }

  async writeZeroes(offset: number, length: number, unmap: boolean): Promise<void> {
    try {
      await this.inner.writeZeroes(offset, length, unmap);
    } finally {
      this.mark(offset, length);
    }
  }

  /** The job copies a fixed range: a disk under a block-commit keeps its size until the job ends. */
  resize(): Promise<void> {
    return Promise.reject(new BlockError(`${this.inner.path}: a block-commit is running on this disk; resize it once the job has ended`));
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
