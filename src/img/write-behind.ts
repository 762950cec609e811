/**
 * Overlaps reading the next chunk with writing the previous one: two buffers alternate, and at
 * most one write is in flight. A copy loop asks for `buffer()`, reads into it, then `submit()`s
 * the write of it; `submit` waits for the previous write first, so a buffer is never refilled
 * while it is being written. `drain()` waits for the last write and reports its failure.
 */
export class WriteBehind {
  private readonly buffers: [Uint8Array, Uint8Array];
  private turn = 0;
  private writing: Promise<void> = Promise.resolve();

  constructor(chunkBytes: number) {
    this.buffers = [new Uint8Array(chunkBytes), new Uint8Array(chunkBytes)];
  }

  /** The first `length` bytes of the buffer no write is using. */
  buffer(length: number): Uint8Array {
    return this.buffers[this.turn]!.subarray(0, length);
  }

  async submit(write: () => Promise<void>): Promise<void> {
    await this.writing;
    this.writing = write();
    // Observed by the next submit or drain; until then it must not count as unhandled.
    this.writing.catch(() => {});
    this.turn ^= 1;
  }

  async drain(): Promise<void> {
    await this.writing;
  }
}
