/** Helpers for firmware tables (MP, ACPI): the zero-sum checksum byte and a little-endian writer. */
/** The byte that makes `bytes` sum to zero mod 256 (MP and ACPI tables use this). */
export function checksumByte(bytes: Uint8Array): number {
  let sum = 0;
  for (const b of bytes) sum = (sum + b) & 0xff;
  return (0x100 - sum) & 0xff;
}

/** A growable little-endian byte writer for building tables. */
export class ByteWriter {
  private buf = new Uint8Array(256);
  private dv = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): number {
    const at = this.length;
    if (at + n > this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, at + n));
      next.set(this.buf);
      this.buf = next;
      this.dv = new DataView(next.buffer);
    }
    this.length += n;
    return at;
  }

  // reserve() may replace the buffer, so take the offset before touching this.dv/this.buf.
  u8(v: number): this { const at = this.reserve(1); this.dv.setUint8(at, v); return this; }
  u16(v: number): this { const at = this.reserve(2); this.dv.setUint16(at, v, true); return this; }
  u32(v: number): this { const at = this.reserve(4); this.dv.setUint32(at, v >>> 0, true); return this; }
  u64(v: bigint | number): this { const at = this.reserve(8); this.dv.setBigUint64(at, BigInt(v), true); return this; }
  bytes(b: Uint8Array): this { const at = this.reserve(b.length); this.buf.set(b, at); return this; }
  /** ASCII text padded with `pad` (or cut) to exactly `len` bytes. */
  ascii(s: string, len: number, pad = 0x20): this {
    const at = this.reserve(len);
    for (let i = 0; i < len; i++) this.buf[at + i] = i < s.length ? s.charCodeAt(i) & 0x7f : pad;
    return this;
  }

  setU8(at: number, v: number): void { this.dv.setUint8(at, v); }
  setU16(at: number, v: number): void { this.dv.setUint16(at, v, true); }
  setU32(at: number, v: number): void { this.dv.setUint32(at, v >>> 0, true); }

  finish(): Uint8Array { return this.buf.slice(0, this.length); }
}
