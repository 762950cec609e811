import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createQcow2 } from '../../../src/block/qcow2/create.js';
import { Qcow2Image } from '../../../src/block/qcow2/image.js';
import { DIRTY_METADATA_LIMIT } from '../../../src/block/qcow2/metadata.js';
import { createSnapshot } from '../../../src/block/qcow2/snapshots.js';
import { checkImage } from '../../../src/block/qcow2/check.js';
import { pattern, qemuCheck, qemuContent, qemuImg, tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

/** Opens `file` writable and counts the fdatasyncs and writes the image issues. */
async function openCounting(file: string): Promise<{ image: Qcow2Image; syncs: () => number; writes: () => number[]; trace: (number | 'sync')[] }> {
  const image = await Qcow2Image.open(file, { readOnly: false });
  let syncs = 0;
  const writes: number[] = [];
  const trace: (number | 'sync')[] = [];
  const datasync = image.meta.file.datasync.bind(image.meta.file);
  const writeAt = image.meta.file.writeAt.bind(image.meta.file);
  image.meta.file.datasync = async () => {
    syncs++;
    trace.push('sync');
    await datasync();
  };
  image.meta.file.writeAt = async (offset: number, data: Uint8Array) => {
    writes.push(offset);
    trace.push(offset);
    await writeAt(offset, data);
  };
  return { image, syncs: () => syncs, writes: () => writes, trace };
}

describe('qcow2 metadata write-back', () => {
  it('allocating writes issue no fdatasync and no metadata write; flush writes it in order', async () => {
    const file = join(tmp.dir, 'nosync.qcow2');
    await createQcow2(file, { size: 64 << 20, clusterSize: 65536, refcountBits: 16, compat: '1.1' });
    const { image, syncs, writes, trace } = await openCounting(file);
    for (let i = 0; i < 200; i++) await image.write((i * 7919 % 1024) * 65536 + 4096, pattern(4096, i));
    expect(syncs()).toBe(0);
    // Only the assembled data clusters went to the file: no L2 table, refcount block or L1 write.
    const dataHosts = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const m = await image.meta.lookup(i * 7919 % 1024);
      if (m.kind === 'data') dataHosts.add(m.hostOffset);
    }
    expect(writes().filter((w) => !dataHosts.has(w - (w % 65536)))).toEqual([]);
    expect(image.meta.hasDirtyMetadata).toBe(true);
    const flushStart = trace.length;
    await image.flush();
    // Order inside the flush: refcount block, barrier, L2 table, barrier, L1, barrier.
    const flushTrace = trace.slice(flushStart);
    const refcountBlock = image.meta.refcounts.blockOffset(0);
    const l2 = image.meta.l2OffsetOf(0);
    const l1 = image.meta.header.l1TableOffset;
    const at = (pred: (e: number | 'sync') => boolean): number => flushTrace.findIndex(pred);
    const rcWrite = at((e) => typeof e === 'number' && e >= refcountBlock && e < refcountBlock + 65536);
    const l2Write = at((e) => e === l2);
    const l1Write = at((e) => typeof e === 'number' && e >= l1 && e < l1 + 65536);
    expect(rcWrite).toBeGreaterThanOrEqual(0);
    expect(l2Write).toBeGreaterThan(rcWrite);
    expect(l1Write).toBeGreaterThan(l2Write);
    expect(flushTrace.slice(rcWrite, l2Write)).toContain('sync');
    expect(flushTrace.slice(l2Write, l1Write)).toContain('sync');
    expect(flushTrace.slice(l1Write)).toContain('sync');
    expect(image.meta.hasDirtyMetadata).toBe(false);
    // refcounts, barrier, L2 tables, barrier, L1, final barrier: at least three syncs.
    expect(syncs()).toBeGreaterThanOrEqual(3);
    await image.close();
    const check = qemuCheck(file);
    expect(check.corruptions + check.leaks + check.checkErrors).toBe(0);
    const content = qemuContent(file, tmp.dir);
    for (let i = 0; i < 200; i++) {
      const at = (i * 7919 % 1024) * 65536 + 4096;
      // A later write to the same cluster may have replaced it: compare against the last writer.
      let last = i;
      for (let j = i + 1; j < 200; j++) if ((j * 7919 % 1024) === (i * 7919 % 1024)) last = j;
      expect(content.subarray(at, at + 4096).equals(pattern(4096, last)), `write ${i}`).toBe(true);
    }
  });

  it('dirty metadata is written back once it outgrows its limit', async () => {
    const file = join(tmp.dir, 'bounded.qcow2');
    // 512-byte clusters: one L2 table per 32 KiB of disk, so scattered writes dirty many tables.
    const tables = DIRTY_METADATA_LIMIT / 512 + 64;
    await createQcow2(file, { size: tables * 32768, clusterSize: 512, refcountBits: 16, compat: '1.1' });
    const { image, syncs } = await openCounting(file);
    for (let t = 0; t < tables; t++) await image.write(t * 32768, pattern(512, t));
    expect(syncs()).toBeGreaterThan(0);
    await image.close();
    expect(qemuCheck(file).corruptions).toBe(0);
  });

  it('an idle image writes its dirty metadata back within a few seconds', async () => {
    const file = join(tmp.dir, 'idle.qcow2');
    await createQcow2(file, { size: 16 << 20, clusterSize: 65536, refcountBits: 16, compat: '1.1' });
    const image = await Qcow2Image.open(file, { readOnly: false });
    await image.write(65536, pattern(4096, 9));
    expect(image.meta.hasDirtyMetadata).toBe(true);
    await new Promise((r) => setTimeout(r, 6000));
    expect(image.meta.hasDirtyMetadata).toBe(false);
    // The metadata is in the file although nobody flushed: qemu-img (read-only, no lock) sees it.
    const content = qemuImg('convert', '-U', '-O', 'raw', file, join(tmp.dir, 'idle.raw'));
    expect(content).toBe('');
    expect(readFileSync(join(tmp.dir, 'idle.raw')).subarray(65536, 69632).equals(pattern(4096, 9))).toBe(true);
    await image.close();
  }, 15_000);

  it('a released cluster is not reused before the flush that frees it', async () => {
    const file = join(tmp.dir, 'reuse.qcow2');
    await createQcow2(file, { size: 16 << 20, clusterSize: 65536, refcountBits: 16, compat: '1.1' });
    const image = await Qcow2Image.open(file, { readOnly: false });
    const host = async (cluster: number): Promise<number> => {
      const m = await image.meta.lookup(cluster);
      if (m.kind !== 'data') throw new Error(`cluster ${cluster} is ${m.kind}`);
      return m.hostOffset;
    };
    await image.write(0, pattern(65536, 1));
    const first = await host(0);
    await image.discard(0, 65536);
    await image.write(65536, pattern(65536, 2));
    expect(await host(1)).not.toBe(first); // still referenced on disk by the durable table
    // The discarded cluster's refcount stays 1 until the table without it is durable.
    expect(await image.meta.refcounts.get(first / 65536)).toBe(1);
    await image.flush();
    expect(await image.meta.refcounts.get(first / 65536)).toBe(0);
    // A partial write: the reused cluster still holds the discarded data, which must not show.
    await image.write(2 * 65536 + 8192, pattern(4096, 3));
    expect(await host(2)).toBe(first); // free once the flush made the decrement durable
    await image.close();
    const check = qemuCheck(file);
    expect(check.corruptions + check.leaks).toBe(0);
    const content = qemuContent(file, tmp.dir);
    const expected = Buffer.alloc(65536);
    pattern(4096, 3).copy(expected, 8192);
    expect(content.subarray(2 * 65536, 3 * 65536).equals(expected)).toBe(true);
  });

  it('snapshot creation and check see cached changes', async () => {
    const file = join(tmp.dir, 'snap.qcow2');
    await createQcow2(file, { size: 8 << 20, clusterSize: 4096, refcountBits: 16, compat: '1.1' });
    const image = await Qcow2Image.open(file, { readOnly: false });
    await image.write(8192, pattern(12288, 5));
    expect((await checkImage(image.meta)).corruptions).toBe(0);
    await createSnapshot(image.meta, 's1');
    await image.write(8192, pattern(4096, 6)); // copy-on-write of a cluster the snapshot shares
    await image.close();
    expect(qemuCheck(file).corruptions).toBe(0);
    const snap = join(tmp.dir, 'snap-s1.raw');
    qemuImg('convert', '-O', 'raw', '-l', 's1', file, snap);
    expect(readFileSync(snap).subarray(8192, 20480).equals(pattern(12288, 5))).toBe(true);
    const content = qemuContent(file, tmp.dir);
    expect(content.subarray(8192, 12288).equals(pattern(4096, 6))).toBe(true);
    expect(content.subarray(12288, 20480).equals(pattern(12288, 5).subarray(4096))).toBe(true);
  });
});
