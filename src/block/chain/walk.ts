/**
 * Walking a backing chain through the BlockBackend interface alone: its layers, a layer by file,
 * and what a read of the top sees at an offset (which layer provides the bytes, as `qemu-img map`
 * reports it).
 */
import { resolve } from 'node:path';
import type { BlockBackend } from '../backend.js';

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

/** The layers of a chain, top first. */
export function layersOf(top: BlockBackend): BlockBackend[] {
  const out: BlockBackend[] = [];
  for (let layer: BlockBackend | null = top; layer !== null; layer = layer.backing) out.push(layer);
  return out;
}

/** The absolute path of a layer's file. */
export function pathOf(layer: BlockBackend): string {
  return resolve(layer.path);
}

/** The layer of `top`'s chain stored in `path`, and the layer above it (null for the top). */
export function findLayer(top: BlockBackend, path: string): { layer: BlockBackend; parent: BlockBackend | null } | null {
  const want = resolve(path);
  let parent: BlockBackend | null = null;
  for (const layer of layersOf(top)) {
    if (pathOf(layer) === want) return { layer, parent };
    parent = layer;
  }
  return null;
}

/**
 * Where the bytes at `offset` come from (at most `maxLength` of them, one kind): the first layer
 * that has them allocated, or "not present" (zeros) when no layer does or a backing file ends.
 */
export async function chainStatus(top: BlockBackend, offset: number, maxLength: number, depth = 0): Promise<ChainExtent> {
  const st = await top.blockStatus(offset, Math.min(maxLength, top.size - offset));
  const base = { start: offset, length: st.length, depth };
  const at = st.hostOffset === undefined ? {} : { offset: st.hostOffset };
  switch (st.kind) {
    case 'data':
      return { ...base, present: true, zero: false, data: true, ...at };
    case 'compressed':
      return { ...base, present: true, zero: false, data: true };
    case 'zero':
      return { ...base, present: true, zero: true, data: false, ...at };
    case 'unallocated': {
      const below = top.backing;
      if (below === null || offset >= below.size) return { ...base, present: false, zero: true, data: false };
      return chainStatus(below, offset, Math.min(st.length, below.size - offset), depth + 1);
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
