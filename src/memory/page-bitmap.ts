/**
 * One bit per 4 KiB page of a guest RAM region: the pages written since the bitmap was last
 * taken. KVM reports the pages vCPUs wrote in this very layout (u64 words, least significant bit
 * first, little-endian), so its bitmap is merged with a single OR per word.
 */
export const PAGE_SIZE = 4096;

export class PageBitmap {
  readonly pages: number;
  /** 32-bit words, so bit arithmetic stays in small integers (u64 KVM words are two of them, LE). */
  private readonly words: Uint32Array;

  constructor(readonly size: number) {
    if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE !== 0) {
      throw new RangeError(`PageBitmap: size ${size} is not a positive multiple of ${PAGE_SIZE}`);
    }
    this.pages = size / PAGE_SIZE;
    // Whole u64 words, as KVM writes them, so `orKvm` never needs a partial word.
    this.words = new Uint32Array(Math.ceil(this.pages / 64) * 2);
  }

  /** A bitmap with every page set: "everything is dirty" (the first copy of a live snapshot). */
  static full(size: number): PageBitmap {
    const b = new PageBitmap(size);
    b.setRange(0, size);
    return b;
  }

  /** Bytes of the KVM_GET_DIRTY_LOG bitmap for this region. */
  get kvmBytes(): number {
    return this.words.byteLength;
  }

  /** Marks every page that [offset, offset+length) touches; the range must lie in the region. */
  setRange(offset: number, length: number): void {
    if (length <= 0) return;
    if (offset < 0 || offset + length > this.size) throw new RangeError(`PageBitmap: ${offset}+${length} is outside ${this.size} bytes`);
    const first = Math.floor(offset / PAGE_SIZE);
    const last = Math.floor((offset + length - 1) / PAGE_SIZE);
    if (first === last) {
      this.words[first >>> 5]! |= 1 << (first & 31);
      return;
    }
    for (let p = first; p <= last; p++) {
      if ((p & 31) === 0 && p + 31 <= last) { this.words[p >>> 5] = 0xffffffff; p += 31; continue; }
      this.words[p >>> 5]! |= 1 << (p & 31);
    }
  }

  /** ORs in a KVM dirty log (as VmFd.getDirtyLog returns it: `kvmBytes` bytes, LE u64 words). */
  orKvm(kvm: Uint8Array): void {
    if (kvm.byteLength !== this.words.byteLength) throw new RangeError(`PageBitmap: a KVM dirty log of ${kvm.byteLength} bytes for ${this.words.byteLength}`);
    const dv = new DataView(kvm.buffer, kvm.byteOffset, kvm.byteLength);
    for (let i = 0; i < this.words.length; i++) {
      const w = dv.getUint32(i * 4, true);
      if (w !== 0) this.words[i]! |= w;
    }
  }

  /** ORs in another bitmap of the same region. */
  or(other: PageBitmap): void {
    if (other.size !== this.size) throw new RangeError(`PageBitmap: merging ${other.size} bytes into ${this.size}`);
    for (let i = 0; i < this.words.length; i++) this.words[i]! |= other.words[i]!;
  }

  has(page: number): boolean {
    return page >= 0 && page < this.pages && (this.words[page >>> 5]! & (1 << (page & 31))) !== 0;
  }

  /** Number of pages set. */
  count(): number {
    let n = 0;
    for (let w of this.words) {
      w -= (w >>> 1) & 0x55555555;
      w = (w & 0x33333333) + ((w >>> 2) & 0x33333333);
      n += (((w + (w >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
    }
    return n;
  }

  /** Maximal runs of set pages as [byte offset, byte length], ascending, split at `maxBytes`. */
  *runs(maxBytes = Number.MAX_SAFE_INTEGER): Generator<[number, number]> {
    const maxPages = Math.max(1, Math.floor(maxBytes / PAGE_SIZE));
    let start = -1;
    for (let i = 0; i < this.words.length; i++) {
      const w = this.words[i]!;
      if ((w === 0 && start < 0) || (w === 0xffffffff && start >= 0 && (i << 5) + 32 - start <= maxPages)) continue;
      for (let b = 0; b < 32; b++) {
        const p = (i << 5) + b;
        if (p >= this.pages) break;
        const set = (w & (1 << b)) !== 0;
        if (set && start < 0) start = p;
        else if (!set && start >= 0) { yield [start * PAGE_SIZE, (p - start) * PAGE_SIZE]; start = -1; }
        else if (set && p - start >= maxPages) { yield [start * PAGE_SIZE, (p - start) * PAGE_SIZE]; start = p; }
      }
    }
    if (start >= 0) yield [start * PAGE_SIZE, (this.pages - start) * PAGE_SIZE];
  }
}
