/**
 * Host-side views of the tiny kernel's virtio-blk workloads (guest-images/README.md): the disk
 * pattern it writes, deterministic noise to fill images with, and the CRC it prints.
 */
import { crc32 } from 'node:zlib';

/** The 8-byte little-endian word tiny writes at disk byte offset `o`. */
export const PATTERN_KEY = 0x594e495400000000n;

export function patternWordAt(offset: number): bigint {
  return BigInt(offset) ^ PATTERN_KEY;
}

/** The pattern bytes tiny writes over disk bytes [from, from + bytes); `from` a multiple of 8. */
export function expectedPattern(bytes: number, from = 0): Buffer {
  const buf = Buffer.alloc(bytes);
  for (let o = 0; o < bytes; o += 8) buf.writeBigUInt64LE(BigInt(from + o) ^ PATTERN_KEY, o);
  return buf;
}

/**
 * Deterministic pseudo-random bytes (xorshift32 per 4-byte word), different per seed and never the
 * pattern, so a disk region the guest did not touch is recognisable byte for byte.
 */
export function noise(bytes: number, seed: number): Buffer {
  const buf = Buffer.alloc(bytes);
  let x = (seed * 2654435761) >>> 0 || 1;
  const words = Math.floor(bytes / 4);
  for (let i = 0; i < words; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    buf.writeUInt32LE(x, i * 4);
  }
  for (let i = words * 4; i < bytes; i++) buf[i] = (i * 31 + seed) & 0xff;
  return buf;
}

/** CRC-32 as tiny prints it: 8 lower-case hex digits. */
export function crcHex(data: Uint8Array): string {
  return crc32(data).toString(16).padStart(8, '0');
}

export interface BlkDevLine {
  index: number;
  address: number;
  capacitySectors: number;
  blockSize: number;
  readOnly: boolean;
  flush: boolean;
}

const DEV_LINE = /^blk: dev(\d+) at 0x([0-9a-f]+) capacity=(\d+) sectors blk_size=(\d+) ro=([01]) flush=([01])$/;

/** The `blk: dev<i> at ...` line tiny prints when it finds its device; throws when absent. */
export function parseBlkDev(lines: string[]): BlkDevLine {
  for (const l of lines) {
    const m = DEV_LINE.exec(l);
    if (m === null) continue;
    return {
      index: Number(m[1]), address: parseInt(m[2]!, 16), capacitySectors: Number(m[3]),
      blockSize: Number(m[4]), readOnly: m[5] === '1', flush: m[6] === '1',
    };
  }
  throw new Error(`no "blk: dev" line in:\n${lines.join('\n')}`);
}

export interface BlkTiming {
  kind: 'seqread' | 'seqwrite' | 'randread';
  bytes: number;
  usec: number;
}

/** Every `blk: <seqread|seqwrite|randread> <bytes> bytes <usec> us` line. */
export function parseBlkTimings(lines: string[]): BlkTiming[] {
  const out: BlkTiming[] = [];
  for (const l of lines) {
    const m = /^blk: (seqread|seqwrite|randread) (\d+) bytes (\d+) us$/.exec(l);
    if (m !== null) out.push({ kind: m[1] as BlkTiming['kind'], bytes: Number(m[2]), usec: Number(m[3]) });
  }
  return out;
}
