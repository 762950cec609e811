import { describe, expect, it } from 'vitest';
import type { BlockBackend } from '../../../src/block/backend.js';
import { DirtyTracker } from '../../../src/vmm/jobs/dirty-tracker.js';

/** A backend whose writes complete only when the test says so. */
function gated(): { backend: BlockBackend; release: () => void } {
  let open: () => void = () => {};
  const gate = new Promise<void>((r) => { open = r; });
  const backend: BlockBackend = {
    path: '/fake/gated.qcow2', size: 1 << 20, readOnly: false, format: 'qcow2', backing: null,
    blockStatus: async (_o, length) => ({ length, kind: 'data' }),
    read: async () => {}, write: () => gate, flush: async () => {}, discard: () => gate, writeZeroes: () => gate, resize: async () => {}, close: async () => {},
  };
  return { backend, release: () => open() };
}

describe('DirtyTracker', () => {
  it('marks every cluster a write, discard or write-zeroes touched, once it completed', async () => {
    const g = gated();
    const t = new DirtyTracker(g.backend, 65536);
    const w = t.write(65536 - 512, new Uint8Array(1024)); // straddles clusters 0 and 1
    const z = t.writeZeroes(4 * 65536, 65536, false);
    const d = t.discard(9 * 65536 + 1, 10);
    // Not yet complete: a copy made now may still read the old data, so nothing is marked.
    expect(t.dirtyCount).toBe(0);
    g.release();
    await Promise.all([w, z, d]);
    expect(t.take()).toEqual([0, 1, 4, 9]);
    expect(t.take()).toEqual([]);
  });

  it('marks a failed write too (part of it may have landed)', async () => {
    const failing: BlockBackend = {
      path: '/fake/failing.img', size: 1 << 20, readOnly: false, format: 'raw', backing: null,
      blockStatus: async (_o, length) => ({ length, kind: 'data' }),
      read: async () => {}, write: async () => { throw new Error('EIO'); }, flush: async () => {},
      discard: async () => {}, writeZeroes: async () => {}, resize: async () => {}, close: async () => {},
    };
    const t = new DirtyTracker(failing, 4096);
    await expect(t.write(8192, new Uint8Array(512))).rejects.toThrow('EIO');
    expect(t.take()).toEqual([2]);
    expect(t.path).toBe('/fake/failing.img'); // the inner backend's, passed through
  });
});
