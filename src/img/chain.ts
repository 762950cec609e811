import type { BlockBackend } from '../block/backend.js';
import { Qcow2Image } from '../block/qcow2/image.js';
import { openImage, type ImageFormat } from '../block/open.js';
import { RawBackend } from '../block/raw.js';
import { ConfigError } from '../errors.js';

/** One run of the guest disk as `qemu-img map` describes it. */
export interface ChainExtent {
  start: number;
  length: number;
  /** Index in the chain (0 = the image itself) of the layer that provides the bytes. */
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  /** Host offset in that layer's file, when the bytes are stored plainly. */
  offset?: number;
}

export function parseFormat(value: unknown, what: string): ImageFormat | null {
  if (value === undefined || value === null) return null;
  if (value !== 'raw' && value !== 'qcow2') throw new ConfigError(`${what}: unknown format "${String(value)}" (use raw or qcow2)`);
  return value;
}

export async function openForTool(path: string, readOnly: boolean, format: ImageFormat | null = null): Promise<BlockBackend> {
  return openImage(path, { readOnly, format });
}

/** The layers of a chain, top first. */
export function layersOf(top: BlockBackend): BlockBackend[] {
  const out: BlockBackend[] = [top];
  let layer: BlockBackend | null = top;
  while (layer instanceof Qcow2Image && layer.backing !== null) {
    layer = layer.backing;
    out.push(layer);
  }
  return out;
}

/**
 * Where the bytes at `offset` come from (at most `maxLength` of them, one kind): the first layer
 * that has them allocated, or "not present" (zeros) when no layer does or a backing file ends.
 */
export async function chainStatus(top: BlockBackend, offset: number, maxLength: number, depth = 0): Promise<ChainExtent> {
  const length = Math.min(maxLength, top.size - offset);
  if (top instanceof RawBackend) {
    const a = await top.allocationAt(offset, length);
    return { start: offset, length: a.length, depth, present: true, zero: !a.data, data: a.data, offset };
  }
  if (!(top instanceof Qcow2Image)) return { start: offset, length, depth, present: true, zero: false, data: true, offset };
  const st = await top.blockStatus(offset, length);
  const base = { start: offset, length: st.length, depth };
  const m = st.mapping;
  switch (m.kind) {
    case 'data':
      return { ...base, present: true, zero: false, data: true, offset: m.hostOffset + (offset % top.clusterSize) };
    case 'compressed':
      return { ...base, present: true, zero: false, data: true };
    case 'zero':
      return { ...base, present: true, zero: true, data: false };
    case 'unallocated': {
      if (top.backing === null || offset >= top.backing.size) return { ...base, present: false, zero: true, data: false };
      return chainStatus(top.backing, offset, Math.min(st.length, top.backing.size - offset), depth + 1);
    }
  }
}

/** Calls `fn` for each extent of [0, size), in order, in pieces of at most `chunk` bytes. */
export async function forEachExtent(top: BlockBackend, chunk: number, fn: (e: ChainExtent) => Promise<void>): Promise<void> {
  for (let at = 0; at < top.size;) {
    const e = await chainStatus(top, at, chunk);
    await fn(e);
    at += e.length;
  }
}

const ZEROS = new Uint8Array(1024 * 1024);

/** True when every byte is zero (memcmp against a zero page, the hot loop of convert/compare). */
export function isAllZero(b: Uint8Array): boolean {
  for (let at = 0; at < b.byteLength; at += ZEROS.byteLength) {
    const part = b.subarray(at, Math.min(b.byteLength, at + ZEROS.byteLength));
    if (Buffer.compare(part, ZEROS.subarray(0, part.byteLength)) !== 0) return false;
  }
  return true;
}
