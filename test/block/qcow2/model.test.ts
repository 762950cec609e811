import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createQcow2 } from '../../../src/block/qcow2/create.js';
import { Qcow2Image } from '../../../src/block/qcow2/image.js';
import { openImage } from '../../../src/block/open.js';
import { applySnapshot, createSnapshot, deleteSnapshot, listSnapshots } from '../../../src/block/qcow2/snapshots.js';
import { prng, qemuCheck, qemuContent, qemuImg, qemuIo, tempDir, writeSampleRaw } from './helpers.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

interface Variant {
  name: string;
  compat: '0.10' | '1.1';
  cluster: number;
  bits: number;
  backing: boolean;
  snapshots: boolean;
}

const variants: Variant[] = [
  { name: 'v3 64K', compat: '1.1', cluster: 65536, bits: 16, backing: false, snapshots: true },
  { name: 'v2 4K with backing', compat: '0.10', cluster: 4096, bits: 16, backing: true, snapshots: true },
  { name: 'v3 512B refcount 64 with backing', compat: '1.1', cluster: 512, bits: 64, backing: true, snapshots: true },
  { name: 'v3 4K refcount 1', compat: '1.1', cluster: 4096, bits: 1, backing: false, snapshots: false },
  { name: 'v3 2M', compat: '1.1', cluster: 2 * 1024 * 1024, bits: 8, backing: true, snapshots: true },
];

describe('random operations against an in-memory model, then qemu-img check', () => {
  it.each(variants)('$name', async (v) => {
    const size = Math.max(4 * 1024 * 1024, 3 * v.cluster) + 1536;
    const file = join(tmp.dir, `${v.name.replace(/\W+/g, '_')}.qcow2`);
    let model: Buffer;
    if (v.backing) {
      const base = join(tmp.dir, `${v.name.replace(/\W+/g, '_')}-base.raw`);
      model = Buffer.alloc(size);
      writeSampleRaw(base, size - 100_000).copy(model);
      await createQcow2(file, { size, clusterSize: v.cluster, refcountBits: v.bits, compat: v.compat,
        backingFile: base.split('/').pop()!, backingFormat: 'raw' });
    } else {
      model = Buffer.alloc(size);
      await createQcow2(file, { size, clusterSize: v.cluster, refcountBits: v.bits, compat: v.compat });
    }
    expect(qemuCheck(file).corruptions + qemuCheck(file).leaks).toBe(0);
    const rand = prng(v.cluster * 7 + v.bits);
    const image = (await openImage(file, { readOnly: false })) as Qcow2Image;
    const saved = new Map<string, Buffer>();
    let snapCounter = 0;
    for (let op = 0; op < (v.cluster > 65536 ? 80 : 250); op++) {
      const r = rand();
      const offset = Math.floor(rand() * size);
      const length = Math.min(size - offset, 1 + Math.floor(rand() * v.cluster * (rand() < 0.2 ? 5 : 1.5)));
      if (r < 0.6) {
        const data = Buffer.alloc(length, 1 + (op % 250));
        data.writeUInt32LE(op, 0);
        await image.write(offset, data);
        data.copy(model, offset);
      } else if (r < 0.75) {
        await image.writeZeroes(offset, length, rand() < 0.5);
        model.fill(0, offset, offset + length);
      } else if (v.snapshots && r < 0.85) {
        const name = `s${snapCounter++}`;
        await createSnapshot(image.meta, name);
        saved.set(name, Buffer.from(model));
      } else if (v.snapshots && r < 0.93 && saved.size > 0) {
        const names = [...saved.keys()];
        const name = names[Math.floor(rand() * names.length)]!;
        await applySnapshot(image.meta, name);
        model = Buffer.from(saved.get(name)!);
      } else if (v.snapshots && saved.size > 2) {
        const names = [...saved.keys()];
        const name = names[Math.floor(rand() * names.length)]!;
        await deleteSnapshot(image.meta, name);
        saved.delete(name);
      } else {
        const probe = Buffer.alloc(length);
        await image.read(offset, probe);
        expect(probe.equals(model.subarray(offset, offset + length))).toBe(true);
      }
    }
    const all = Buffer.alloc(size);
    await image.read(0, all);
    expect(all.equals(model)).toBe(true);
    expect((await listSnapshots(image.meta)).map((s) => s.name).sort()).toEqual([...saved.keys()].sort());
    await image.close();
    const check = qemuCheck(file);
    expect(check).toEqual({ corruptions: 0, leaks: 0, checkErrors: 0, status: 0 });
    expect(qemuContent(file, tmp.dir).equals(model)).toBe(true);
    // qemu-img sees the snapshots this engine created, with their content.
    for (const [name, content] of [...saved].slice(0, 2)) {
      const out = join(tmp.dir, 'snap.raw');
      qemuImg('convert', '-l', `snapshot.name=${name}`, '-O', 'raw', file, out);
      const { readFileSync } = await import('node:fs');
      expect(readFileSync(out).equals(content)).toBe(true);
    }
  });
});

describe('snapshots across tools', () => {
  it('qemu-img snapshots are listed and applied by the engine; engine snapshots by qemu-img', async () => {
    const file = join(tmp.dir, 'cross.qcow2');
    qemuImg('create', '-f', 'qcow2', file, '2M');
    qemuIo(file, 'write -P 0x61 0 128k');
    qemuImg('snapshot', '-c', 'from-qemu', file);
    qemuIo(file, 'write -P 0x62 64k 128k');
    const image = (await openImage(file, { readOnly: false })) as Qcow2Image;
    expect((await listSnapshots(image.meta)).map((s) => s.name)).toEqual(['from-qemu']);
    await createSnapshot(image.meta, 'from-tsvmm');
    await applySnapshot(image.meta, 'from-qemu');
    const head = Buffer.alloc(192 * 1024);
    await image.read(0, head);
    expect(head.subarray(0, 128 * 1024).every((b) => b === 0x61)).toBe(true);
    expect(head.subarray(128 * 1024).every((b) => b === 0)).toBe(true);
    await image.close();
    expect(qemuImg('snapshot', '-l', file)).toContain('from-tsvmm');
    expect(qemuCheck(file).corruptions + qemuCheck(file).leaks).toBe(0);
    qemuImg('snapshot', '-a', 'from-tsvmm', file);
    const content = qemuContent(file, tmp.dir);
    expect(content.subarray(64 * 1024, 192 * 1024).every((b) => b === 0x62)).toBe(true);
    qemuImg('snapshot', '-d', 'from-qemu', file);
    const again = (await openImage(file, { readOnly: false })) as Qcow2Image;
    await deleteSnapshot(again.meta, 'from-tsvmm');
    await again.close();
    expect(qemuCheck(file)).toEqual({ corruptions: 0, leaks: 0, checkErrors: 0, status: 0 });
  });
});
