import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/tsvmm-img.js';
import { lockImage } from '../../src/block/lock.js';
import { openImage } from '../../src/block/open.js';
import { commitImage } from '../../src/img/commit.js';
import { rebaseImage } from '../../src/img/rebase.js';
import { prng, qemuCheck, qemuContent, qemuImg, qemuIo, tempDir, writeSampleRaw } from '../block/qcow2/helpers.js';
import { CLEAN } from './run-img.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const at = (name: string): string => join(tmp.dir, name);

describe('random writes, commits and rebases on a chain, against a model', () => {
  it('raw ← mid.qcow2 ← top.qcow2', async () => {
    const size = 3 * 1024 * 1024;
    const model = Buffer.alloc(size);
    writeSampleRaw(at('base.raw'), 2 * 1024 * 1024).copy(model);
    qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', 'base.raw', '-F', 'raw', at('mid.qcow2'), String(size));
    qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=16384', '-b', 'mid.qcow2', '-F', 'qcow2', at('top.qcow2'));
    const rand = prng(2024);
    let backing = 'mid.qcow2';
    for (let op = 0; op < 120; op++) {
      const r = rand();
      if (r < 0.8) {
        const disk = await openImage(at('top.qcow2'), { readOnly: false });
        for (let i = 0; i < 5; i++) {
          const offset = Math.floor(rand() * size);
          const length = Math.min(size - offset, 1 + Math.floor(rand() * 50000));
          if (rand() < 0.8) {
            const data = Buffer.alloc(length, 1 + (op % 250));
            await disk.write(offset, data);
            data.copy(model, offset);
          } else {
            await disk.writeZeroes(offset, length, rand() < 0.5);
            model.fill(0, offset, offset + length);
          }
        }
        await disk.close();
      } else if (r < 0.9 && backing === 'mid.qcow2') {
        await commitImage({ file: at('top.qcow2'), base: null, keepTop: rand() < 0.5, progress: false });
      } else {
        backing = backing === 'mid.qcow2' ? 'base.raw' : 'mid.qcow2';
        await rebaseImage({ file: at('top.qcow2'), backing, backingFormat: backing.endsWith('raw') ? 'raw' : 'qcow2', unsafe: false, progress: false });
      }
      if (op % 30 === 29 || r >= 0.8) {
        expect(qemuContent(at('top.qcow2'), tmp.dir).equals(model), `op ${op}`).toBe(true);
      }
    }
    expect(qemuContent(at('top.qcow2'), tmp.dir).equals(model)).toBe(true);
    expect(qemuCheck(at('top.qcow2'))).toEqual(CLEAN);
    expect(qemuCheck(at('mid.qcow2'))).toEqual(CLEAN);
  });
});

describe('image locks and bitmaps', () => {
  it('a writable tsvmm-img verb refuses an image another open holds for writing', async () => {
    qemuImg('create', '-f', 'qcow2', at('locked.qcow2'), '1M');
    const fd = openSync(at('locked.qcow2'), 'r+');
    try {
      await lockImage(fd, at('locked.qcow2'), 'write');
      let err = '';
      const code = await main(['snapshot', '-c', 's', at('locked.qcow2')], { out: () => {}, err: (t) => (err += t) });
      expect(code).toBe(1);
      expect(err).toMatch(/locked/);
    } finally {
      closeSync(fd);
    }
    expect(await main(['snapshot', '-c', 's', at('locked.qcow2')], { out: () => {}, err: () => {} })).toBe(0);
  });

  it('info says when bitmaps were invalidated by a write', async () => {
    qemuImg('create', '-f', 'qcow2', at('bm.qcow2'), '1M');
    qemuImg('bitmap', '--add', at('bm.qcow2'), 'b0');
    qemuIo(at('bm.qcow2'), 'write -P 1 0 4k');
    const disk = await openImage(at('bm.qcow2'), { readOnly: false });
    await disk.write(0, Buffer.alloc(512, 2));
    await disk.close();
    let out = '';
    await main(['info', at('bm.qcow2')], { out: (t) => (out += t), err: () => {} });
    expect(out).toMatch(/bitmaps: inconsistent/);
  });
});
