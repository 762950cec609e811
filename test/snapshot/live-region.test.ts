import { randomBytes } from 'node:crypto';
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PageBitmap } from '../../src/memory/page-bitmap.js';
import { LiveRegionFile } from '../../src/snapshot/live-region.js';
import { verifyRegionFile, writeRegionFile } from '../../src/snapshot/sparse.js';
import { PAGE, tempRoot } from './helpers.js';

let root: string;
beforeAll(async () => { root = await tempRoot(); });
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

const PAGES = 256;

/** RAM with data in pages 0-9 and 100-149, the rest zero. */
function ram(): Uint8Array {
  const r = new Uint8Array(PAGES * PAGE);
  r.set(randomBytes(10 * PAGE), 0);
  r.set(randomBytes(50 * PAGE), 100 * PAGE);
  return r;
}

/** Changes pages as a running guest would, and returns the bitmap a dirty log would report. */
function scribble(r: Uint8Array, dirtyNew: number[], zeroed: number[]): PageBitmap {
  const b = new PageBitmap(r.byteLength);
  for (const p of dirtyNew) { r.set(randomBytes(PAGE), p * PAGE); b.setRange(p * PAGE, PAGE); }
  for (const p of zeroed) { r.fill(0, p * PAGE, (p + 1) * PAGE); b.setRange(p * PAGE, PAGE); }
  return b;
}

describe('LiveRegionFile: a memory file copied while the guest writes', () => {
  it('after a full copy and passes over the dirty pages, holds exactly the final RAM, with the checksum a one-shot write gets', async () => {
    const r = ram();
    const file = await LiveRegionFile.create(join(root, 'live-0'), r.byteLength);
    expect(await file.copyAll(r)).toBe(60 * PAGE);
    // Pass 1: new data in a hole and over data; pages 0-4 become zero (holes again).
    expect(await file.copyDirty(r, scribble(r, [50, 120, 255], [0, 1, 2, 3, 4]))).toBe(3 * PAGE);
    // Pass 2 (the paused one, written on this thread): one page again.
    await file.copyDirty(r, scribble(r, [120], []), { blocking: true });
    const live = await file.finish('crc32-pages-v1');
    expect(Buffer.compare(await readFile(join(root, 'live-0')), Buffer.from(r))).toBe(0);
    const oneShot = await writeRegionFile(join(root, 'oneshot-0'), r, undefined, 'crc32-pages-v1');
    expect(live).toEqual(oneShot);
    expect(live.dataBytes).toBe((60 - 5 + 2) * PAGE);
    await verifyRegionFile(join(root, 'live-0'), r.byteLength, live.checksum, 'live-0');
    // The zeroed pages were punched out: the file is no larger on disk than the one-shot one.
    expect((await stat(join(root, 'live-0'))).blocks).toBeLessThanOrEqual((await stat(join(root, 'oneshot-0'))).blocks);
  });

  it('a write the dirty bitmap does not report stays stale in the file (why the log must be exact)', async () => {
    const r = ram();
    const file = await LiveRegionFile.create(join(root, 'stale-0'), r.byteLength);
    await file.copyAll(r);
    const b = scribble(r, [7], []);
    r[8 * PAGE] = r[8 * PAGE]! ^ 0xff; // written, but nobody logged it
    await file.copyDirty(r, b);
    await file.finish('crc32-pages-v1');
    const onDisk = await readFile(join(root, 'stale-0'));
    expect(Buffer.compare(onDisk.subarray(7 * PAGE, 8 * PAGE), Buffer.from(r.subarray(7 * PAGE, 8 * PAGE)))).toBe(0);
    expect(onDisk[8 * PAGE]).not.toBe(r[8 * PAGE]);
  });

  it('stops before the next run once its signal is aborted, and refuses mismatched views and bitmaps', async () => {
    const r = ram();
    const file = await LiveRegionFile.create(join(root, 'abort-0'), r.byteLength);
    const ac = new AbortController();
    ac.abort(new Error('VM torn down'));
    await expect(file.copyAll(r, undefined, { signal: ac.signal })).rejects.toThrow('VM torn down');
    await expect(file.copyDirty(new Uint8Array(PAGE), new PageBitmap(PAGE))).rejects.toThrow(RangeError);
    await expect(file.copyDirty(r, new PageBitmap(PAGE))).rejects.toThrow(RangeError);
    await file.abandon();
  });
});
