import { randomBytes } from 'node:crypto';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openImage } from '../../src/block/open.js';
import { qemuCheck, qemuContent, qemuImg, qemuIo, tempDir } from '../block/qcow2/helpers.js';
import { CLEAN, img } from './run-img.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const at = (name: string): string => join(tmp.dir, name);


/** A 4 KiB-cluster source: compressible patterns, an incompressible run, a partial last cluster. */
function makeSource(): string {
  const file = at('source.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', file, `${64 * 1024 * 1024 - 1536}`);
  const noise = at('noise.bin');
  writeFileSync(noise, randomBytes(1024 * 1024));
  qemuIo(file, 'write -P 0x5a 0 6M', 'write -P 0x11 20M 100k', 'write -P 0x22 63M 512k', `write -s ${noise} 40M 1M`);
  return file;
}

describe('tsvmm-img convert -c', () => {
  const source = makeSource();
  const expected = qemuContent(source, tmp.dir);

  it.each([
    ['64 KiB clusters, v3', 'cluster_size=65536'],
    ['1 KiB clusters (two sector-count bits)', 'cluster_size=1024'],
    ['2 MiB clusters, v2', 'cluster_size=2M,compat=0.10'],
  ])('%s: qemu-img checks, compares and reads it; compressed clusters are counted as such', async (_name, opts) => {
    const out = at(`c-${opts.replace(/[^a-z0-9]/gi, '')}.qcow2`);
    expect((await img('convert', '-c', '-O', 'qcow2', '-o', opts, source, out)).code).toBe(0);
    expect(qemuCheck(out)).toEqual(CLEAN);
    expect(qemuImg('compare', source, out)).toMatch(/identical/);
    expect(qemuContent(out, tmp.dir).equals(expected)).toBe(true);
    expect(qemuImg('check', out)).toMatch(/[1-9][0-9.]*% compressed clusters/);
    // tsvmm's own reader, through the compressed clusters.
    const image = await openImage(out, { readOnly: true });
    const mine = Buffer.alloc(image.size);
    await image.read(0, mine);
    await image.close();
    expect(mine.equals(expected)).toBe(true);
  });

  it('is much smaller than a plain convert; incompressible clusters are stored as they are', async () => {
    const plain = at('plain.qcow2');
    const packed = at('packed.qcow2');
    expect((await img('convert', '-O', 'qcow2', source, plain)).code).toBe(0);
    expect((await img('convert', '-c', '-O', 'qcow2', source, packed)).code).toBe(0);
    expect(statSync(packed).size).toBeLessThan(statSync(plain).size / 2);
    const map = JSON.parse(qemuImg('map', '--output=json', packed)) as Array<{ start: number; offset?: number; data: boolean }>;
    // qemu-img map reports a host offset only for uncompressed data: the random megabyte.
    const raw = map.filter((e) => e.data && e.offset !== undefined);
    expect(raw.map((e) => e.start)).toEqual([40 * 1024 * 1024]);
  });

  it('refuses -c for raw output, in one line', async () => {
    const r = await img('convert', '-c', '-O', 'raw', source, at('nope.raw'));
    expect(r.code).toBe(1);
    expect(r.err).toBe('tsvmm-img: -c (compressed clusters) needs -O qcow2\n');
  });
});
