/**
 * Copies between the host and the buffers of a descriptor chain, for devices whose messages
 * (packets, frames) span several guest buffers. The descriptors were checked to lie in guest RAM
 * when the chain was walked (chain.ts).
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { Descriptor } from './chain.js';

/** `len` bytes starting `offset` bytes into the buffers, copied out of guest memory (into `out` when given). */
export function copyFromBuffers(memory: GuestMemory, buffers: readonly Descriptor[], offset: number, len: number, out = new Uint8Array(len)): Uint8Array {
  let skip = offset;
  let at = 0;
  for (const d of buffers) {
    if (at === len) break;
    if (skip >= d.len) {
      skip -= d.len;
      continue;
    }
    const n = Math.min(d.len - skip, len - at);
    out.set(memory.slice(d.addr + skip, n), at);
    at += n;
    skip = 0;
  }
  return out;
}

/** Writes `bytes` across the writable buffers, in order, as far as they reach; returns the count written. */
export function copyIntoBuffers(memory: GuestMemory, buffers: readonly Descriptor[], bytes: Uint8Array): number {
  let at = 0;
  for (const d of buffers) {
    if (!d.writable || at === bytes.length) continue;
    const n = Math.min(d.len, bytes.length - at);
    memory.write(d.addr, bytes.subarray(at, at + n));
    at += n;
  }
  return at;
}
