import { createHash, type Hash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { lseek, SEEK_DATA, SEEK_HOLE } from '../sys/libc.js';
import { SnapshotError } from './errors.js';
import { PAGE_SIZE } from '../memory/page-bitmap.js';

/**
 * Sparse memory files: only non-zero 4 KiB pages are written, the rest of the file is holes, so a
 * snapshot's time and size follow the memory the guest touched, not its RAM size.
 *
 * The checksum is defined over the file's *logical* content, independent of how the filesystem
 * stores it (hole, allocated zeros, or a non-sparse copy made by `cp`): with P = size / 4096,
 *
 *     H( every non-zero page, in ascending order  ‖  bitmap of non-zero pages (P bits, LSB first)
 *        ‖  size as u64 little-endian )
 *
 * The bitmap fixes where each page goes and that every other page reads as zero, so the digest
 * covers every byte a restorer will map — including that holes are holes — while the reader only
 * reads the extents SEEK_DATA reports and hashes only their non-zero pages. Cost is proportional
 * to the data, never to the RAM size.
 */

export { PAGE_SIZE };
/** Zero-check stride for skipping large zero areas inside data extents (16 pages per memcmp). */
const SKIP_STRIDE = 64 * 1024;
/** Largest single write/read; big enough to amortise the thread-pool round trip. */
export const IO_CHUNK = 8 * 1024 * 1024;

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE);
const ZERO_STRIDE = Buffer.alloc(SKIP_STRIDE);

/**
 * `crc32-pages-v1`: zlib CRC-32 (2.4 GB/s here) — catches accidental damage (bit flips, torn or
 * partial copies), which is the threat: whoever can rewrite a memory file can also rewrite
 * vm.json and its checksum. `sha256-pages-v1` (1.4 GB/s with SHA-NI) is kept for users who want
 * a cryptographic digest to compare against an out-of-band record.
 */
export const CHECKSUM_ALGORITHMS = ['crc32-pages-v1', 'sha256-pages-v1'] as const;
export type ChecksumAlgorithm = (typeof CHECKSUM_ALGORITHMS)[number];
export const DEFAULT_CHECKSUM_ALGORITHM: ChecksumAlgorithm = 'crc32-pages-v1';

export interface RegionChecksum {
  algorithm: ChecksumAlgorithm;
  /** Lowercase hex. */
  value: string;
}

interface Hasher {
  update(data: Uint8Array): void;
  hex(): string;
}

function makeHasher(algorithm: ChecksumAlgorithm): Hasher {
  if (algorithm === 'sha256-pages-v1') {
    const h: Hash = createHash('sha256');
    return { update: (d) => h.update(d), hex: () => h.digest('hex') };
  }
  let c = 0;
  return { update: (d) => { c = crc32(d, c); }, hex: () => c.toString(16).padStart(8, '0') };
}

/** Streaming form of the page digest above. Runs must come page-aligned and in ascending order. */
export class PageDigest {
  private readonly hasher: Hasher;
  private readonly bitmap: Uint8Array;
  private nextOffset = 0;
  private bytes = 0;

  constructor(readonly algorithm: ChecksumAlgorithm, readonly size: number) {
    if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE !== 0) {
      throw new RangeError(`PageDigest: size ${size} is not a positive multiple of ${PAGE_SIZE}`);
    }
    this.hasher = makeHasher(algorithm);
    this.bitmap = new Uint8Array(Math.ceil(size / PAGE_SIZE / 8));
  }

  /** Adds `data` (only non-zero pages, as found by nonZeroRuns) at file offset `offset`. */
  addRun(offset: number, data: Uint8Array): void {
    if (offset % PAGE_SIZE !== 0 || data.byteLength % PAGE_SIZE !== 0 || offset < this.nextOffset || offset + data.byteLength > this.size) {
      throw new RangeError(`PageDigest: run ${offset}+${data.byteLength} is unaligned, out of order or out of range`);
    }
    this.hasher.update(data);
    for (let p = offset / PAGE_SIZE, end = (offset + data.byteLength) / PAGE_SIZE; p < end; p++) {
      this.bitmap[p >> 3]! |= 1 << (p & 7);
    }
    this.nextOffset = offset + data.byteLength;
    this.bytes += data.byteLength;
  }

  /** Bytes in non-zero pages seen so far. */
  get dataBytes(): number {
    return this.bytes;
  }

  finish(): RegionChecksum {
    this.hasher.update(this.bitmap);
    const tail = Buffer.alloc(8);
    tail.writeBigUInt64LE(BigInt(this.size));
    this.hasher.update(tail);
    return { algorithm: this.algorithm, value: this.hasher.hex() };
  }
}

/**
 * Maximal runs of non-zero pages in bytes[start, end) (page-aligned), split at `maxRun` bytes.
 * Zero checks are memcmp (Buffer#compare with ranges, no allocation): 64 KiB at a time first, so
 * long zero stretches cost ~one memcmp per 16 pages.
 */
export function* nonZeroRuns(bytes: Uint8Array, start: number, end: number, maxRun = IO_CHUNK): Generator<[number, number]> {
  let runStart = -1;
  let off = start;
  while (off < end) {
    if (off % SKIP_STRIDE === 0 && off + SKIP_STRIDE <= end && ZERO_STRIDE.compare(bytes, off, off + SKIP_STRIDE) === 0) {
      if (runStart >= 0) { yield [runStart, off - runStart]; runStart = -1; }
      off += SKIP_STRIDE;
      continue;
    }
    if (ZERO_PAGE.compare(bytes, off, off + PAGE_SIZE) === 0) {
      if (runStart >= 0) { yield [runStart, off - runStart]; runStart = -1; }
    } else if (runStart < 0) {
      runStart = off;
    } else if (off - runStart >= maxRun) {
      yield [runStart, off - runStart];
      runStart = off;
    }
    off += PAGE_SIZE;
  }
  if (runStart >= 0) yield [runStart, end - runStart];
}

/**
 * Validates caller-supplied data extents ([offset, length] pairs) and turns them into sorted,
 * merged, page-aligned ranges inside [0, size). Without extents the whole region is scanned.
 */
export function normalizeExtents(extents: ReadonlyArray<readonly [number, number]> | undefined, size: number): Array<[number, number]> {
  if (extents === undefined) return [[0, size]];
  const ranges: Array<[number, number]> = [];
  for (const [i, e] of extents.entries()) {
    const [off, len] = e;
    if (!Number.isSafeInteger(off) || !Number.isSafeInteger(len) || off < 0 || len < 0 || off + len > size) {
      throw new RangeError(`data extent ${i} (${off}+${len}) is not inside the region of ${size} bytes`);
    }
    if (len === 0) continue;
    const s = off - (off % PAGE_SIZE);
    const e2 = Math.min(size, Math.ceil((off + len) / PAGE_SIZE) * PAGE_SIZE);
    ranges.push([s, e2]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last !== undefined && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else merged.push([r[0], r[1]]);
  }
  return merged.map(([s, e]) => [s, e - s]);
}

/** Writes bytes[offset, offset+length) at the same offset of the file, however many calls it takes. */
export async function writeFully(fh: FileHandle, bytes: Uint8Array, offset: number, length: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await fh.write(bytes, offset + done, length - done, offset + done);
    if (bytesWritten <= 0) throw new Error(`write made no progress at offset ${offset + done}`);
    done += bytesWritten;
  }
}

export interface RegionWriteResult {
  dataBytes: number;
  checksum: RegionChecksum;
}

/**
 * Writes guest RAM `bytes` (a live view, never copied) as a sparse file of exactly bytes.length
 * bytes at `path` (which must not exist), then fsyncs it. Each run's write runs on the libuv pool
 * while this thread hashes the same run, so hashing mostly hides behind the I/O.
 */
export async function writeRegionFile(
  path: string,
  bytes: Uint8Array,
  dataExtents: ReadonlyArray<readonly [number, number]> | undefined,
  algorithm: ChecksumAlgorithm,
): Promise<RegionWriteResult> {
  const size = bytes.byteLength;
  const digest = new PageDigest(algorithm, size);
  const extents = normalizeExtents(dataExtents, size);
  const fh = await open(path, 'wx', 0o644);
  try {
    await fh.truncate(size);
    for (const [extOff, extLen] of extents) {
      for (const [off, len] of nonZeroRuns(bytes, extOff, extOff + extLen)) {
        const pending = writeFully(fh, bytes, off, len);
        digest.addRun(off, bytes.subarray(off, off + len));
        await pending;
      }
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return { dataBytes: digest.dataBytes, checksum: digest.finish() };
}

/** The file's data extents (SEEK_DATA/SEEK_HOLE), page-aligned and merged. */
export function dataExtentsOf(fd: number, size: number): Array<[number, number]> {
  const found: Array<[number, number]> = [];
  let off = 0;
  while (off < size) {
    const data = lseek(fd, off, SEEK_DATA);
    if (data < 0 || data >= size) break;
    let hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0 || hole > size) hole = size;
    found.push([data, hole - data]);
    off = hole;
  }
  return normalizeExtents(found, size);
}

export interface RegionVerifyResult {
  dataBytes: number;
  /** Where the file holds data, for callers that want to prefault exactly those ranges. */
  dataExtents: Array<[number, number]>;
  /** The verified file, still open, when asked for (`keepOpen`); the caller closes it. */
  file?: FileHandle;
}

export interface FileDigest {
  checksum: RegionChecksum;
  dataBytes: number;
  dataExtents: Array<[number, number]>;
}

/**
 * The page digest of an open memory file of `size` bytes. Reads only the data extents,
 * double-buffered: the next chunk is read on the pool while this thread scans and hashes the
 * current one. `label` names the file in errors.
 */
export async function digestRegionFile(fh: FileHandle, size: number, algorithm: ChecksumAlgorithm, label: string): Promise<FileDigest> {
  const extents = dataExtentsOf(fh.fd, size);
  const digest = new PageDigest(algorithm, size);
  const chunks: Array<[number, number]> = [];
  for (const [off, len] of extents) {
    for (let o = off; o < off + len; o += IO_CHUNK) chunks.push([o, Math.min(IO_CHUNK, off + len - o)]);
  }
  // Sized to the largest chunk, not IO_CHUNK: a snapshot with little data (or a region with
  // none) should not make V8 account 16 MiB of fresh external memory, which starts a GC in the
  // middle of a restore (measured: ~8 ms more for a 4 GiB VM with two regions).
  const bufferBytes = chunks.reduce((n, [, len]) => Math.max(n, len), 0);
  const buffers = [Buffer.allocUnsafe(bufferBytes), Buffer.allocUnsafe(chunks.length > 1 ? bufferBytes : 0)];
  const readChunk = async (i: number): Promise<void> => {
    const [off, len] = chunks[i]!;
    const buf = buffers[i % 2]!;
    let done = 0;
    while (done < len) {
      const { bytesRead } = await fh.read(buf, done, len - done, off + done);
      if (bytesRead === 0) throw new SnapshotError(`snapshot memory file ${label} shrank while being read`, { file: label });
      done += bytesRead;
    }
  };
  let pending = chunks.length > 0 ? readChunk(0) : undefined;
  try {
    for (let i = 0; i < chunks.length; i++) {
      await pending;
      pending = i + 1 < chunks.length ? readChunk(i + 1) : undefined;
      const [off, len] = chunks[i]!;
      const buf = buffers[i % 2]!;
      for (const [runOff, runLen] of nonZeroRuns(buf, 0, len)) digest.addRun(off + runOff, buf.subarray(runOff, runOff + runLen));
    }
  } finally {
    // Never close the file under a read still in flight (it only is after an error).
    await pending?.catch(() => undefined);
  }
  return { checksum: digest.finish(), dataBytes: digest.dataBytes, dataExtents: extents };
}

/**
 * Checks that the file at `path` is a regular file of exactly `size` bytes whose page digest is
 * `expected`. With `keepOpen` the open handle is returned, so the caller maps the very file that
 * was checked.
 */
export async function verifyRegionFile(
  path: string, size: number, expected: RegionChecksum, label: string, keepOpen = false,
): Promise<RegionVerifyResult> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const problem = code === 'ENOENT' ? 'is missing' : `cannot be opened (${code ?? String(e)})`;
    throw new SnapshotError(`snapshot memory file ${label} ${problem}`, { file: label });
  }
  let verified = false;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new SnapshotError(`snapshot memory file ${label} is not a regular file`, { file: label });
    if (st.size !== size) {
      const how = st.size < size ? 'truncated' : 'longer than declared';
      throw new SnapshotError(`snapshot memory file ${label} is ${how}: ${st.size} bytes, vm.json declares ${size}`, {
        file: label, actualSize: st.size, declaredSize: size,
      });
    }
    const actual = await digestRegionFile(fh, size, expected.algorithm, label);
    if (actual.checksum.value !== expected.value) {
      throw new SnapshotError(`snapshot memory file ${label} is corrupt: ${expected.algorithm} checksum ${actual.checksum.value} does not match ${expected.value} in vm.json`, {
        file: label, expected: expected.value, actual: actual.checksum.value,
      });
    }
    const result: RegionVerifyResult = { dataBytes: actual.dataBytes, dataExtents: actual.dataExtents };
    if (keepOpen) {
      result.file = fh;
      verified = true;
    }
    return result;
  } finally {
    if (!verified) await fh.close();
  }
}
