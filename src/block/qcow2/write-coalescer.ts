import type { HostFile } from '../host-file.js';

/** Merges writes that are adjacent both in the file and in memory into one request. */
export class WriteCoalescer {
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
