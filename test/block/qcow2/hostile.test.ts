import { copyFileSync, openSync, readFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TsvmmError } from '../../../src/errors.js';
import { checkImage } from '../../../src/block/qcow2/check.js';
import { createSnapshot } from '../../../src/block/qcow2/snapshots.js';
import type { Qcow2Image } from '../../../src/block/qcow2/image.js';
import { openImage } from '../../../src/block/open.js';
import { prng, qemuImg, qemuIo, tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe('corrupted metadata fails with typed errors, never with crashes or hangs', () => {
  it.each([['read-only', true], ['writable', false]])('%s: images with random bytes of their metadata overwritten', async (_mode, readOnly) => {
    const pristine = join(tmp.dir, 'pristine.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=512', pristine, '256k');
    qemuIo(pristine, 'write -P 3 0 64k', 'write -P 4 100k 20k');
    qemuImg('snapshot', '-c', 's1', pristine);
    const metadataEnd = 12 * 512; // header, refcount table and block, L1, first L2 tables, snapshot
    const size = readFileSync(pristine).byteLength;
    const rand = prng(readOnly ? 5 : 6);
    const file = join(tmp.dir, 'fuzz.qcow2');
    let typed = 0;
    for (let i = 0; i < (readOnly ? 150 : 80); i++) {
      copyFileSync(pristine, file);
      const fd = openSync(file, 'r+');
      for (let k = 0; k < 1 + Math.floor(rand() * 4); k++) {
        const at = Math.floor(rand() * Math.min(size, metadataEnd));
        writeSync(fd, Buffer.from([Math.floor(rand() * 256)]), 0, 1, at);
      }
      closeSync(fd);
      let img: Awaited<ReturnType<typeof openImage>> | null = null;
      try {
        img = await openImage(file, { readOnly });
        const all = Buffer.alloc(img.size);
        await img.read(0, all);
        if (!readOnly) {
          await img.write(1000, Buffer.alloc(70000, 9));
          await img.writeZeroes(0, 4096, true);
          if (img.format === 'qcow2') await createSnapshot((img as Qcow2Image).meta, `s${i}`);
        }
        if (img.format === 'qcow2') await checkImage((img as Qcow2Image).meta);
        await img.close();
      } catch (err) {
        await img?.close().catch(() => {});
        if (!(err instanceof TsvmmError)) throw new Error(`iteration ${i}: untyped ${String(err)}`);
        typed++;
      }
    }
    expect(typed).toBeGreaterThan(10);
  });
});
