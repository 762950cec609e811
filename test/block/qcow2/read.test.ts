import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createQcow2 } from '../../../src/block/qcow2/create.js';
import { openImage } from '../../../src/block/open.js';
import { pattern, qemuContent, qemuImg, qemuIo, tempDir, writeSampleRaw } from './helpers.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

async function engineContent(path: string): Promise<Buffer> {
  const img = await openImage(path, { readOnly: true });
  try {
    const out = Buffer.alloc(img.size);
    // Odd-sized chunks so reads straddle cluster boundaries.
    for (let at = 0; at < img.size; at += 300_007) await img.read(at, out.subarray(at, Math.min(img.size, at + 300_007)));
    return out;
  } finally {
    await img.close();
  }
}

describe('qcow2 images written by qemu-img read byte-for-byte', () => {
  const size = 3 * 1024 * 1024 + 4096;
  const raw = join(tmp.dir, 'sample.raw');
  const content = writeSampleRaw(raw, size);
  const variants: [string, string, number][] = [];
  for (const compat of ['0.10', '1.1']) {
    for (const cluster of [512, 4096, 65536, 2 * 1024 * 1024]) {
      for (const refcountBits of compat === '0.10' ? [16] : [1, 16, 64]) variants.push([compat, `${cluster}`, refcountBits]);
    }
  }
  it.each(variants)('compat=%s cluster_size=%s refcount_bits=%i', async (compat, cluster, bits) => {
    const file = join(tmp.dir, `v-${compat}-${cluster}-${bits}.qcow2`);
    qemuImg('convert', '-O', 'qcow2', '-o', `compat=${compat},cluster_size=${cluster},refcount_bits=${bits}`, raw, file);
    expect((await engineContent(file)).equals(content)).toBe(true);
  });

  it.each(['512', '65536', '2097152'])('deflate-compressed clusters (cluster_size=%s)', async (cluster) => {
    const file = join(tmp.dir, `c-${cluster}.qcow2`);
    qemuImg('convert', '-c', '-O', 'qcow2', '-o', `cluster_size=${cluster}`, raw, file);
    expect(qemuImg('map', '--output=json', file)).toContain('"data": true');
    expect((await engineContent(file)).equals(content)).toBe(true);
  });

  it('zero clusters (v3 flag) over a backing file, and v2 images', async () => {
    const base = join(tmp.dir, 'zbase.qcow2');
    qemuImg('convert', '-O', 'qcow2', raw, base);
    const top = join(tmp.dir, 'ztop.qcow2');
    qemuImg('create', '-f', 'qcow2', '-b', 'zbase.qcow2', '-F', 'qcow2', top);
    qemuIo(top, 'write -z 0 256k', 'write -z 1M 64k', 'write -P 0x5a 70000 5000');
    const expected = qemuContent(top, tmp.dir);
    expect(expected.subarray(0, 65536).every((b) => b === 0)).toBe(true);
    expect((await engineContent(top)).equals(expected)).toBe(true);
  });
});

describe('backing chains', () => {
  it('qcow2 → qcow2 → raw with relative names, shorter backing files read as zeros', async () => {
    const base = join(tmp.dir, 'chain-base.raw');
    writeSampleRaw(base, 1024 * 1024);
    const mid = join(tmp.dir, 'chain-mid.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', 'chain-base.raw', '-F', 'raw', mid, '2M');
    qemuIo(mid, 'write -P 0x11 500k 100k', 'write -P 0x22 1500k 10k');
    const top = join(tmp.dir, 'chain-top.qcow2');
    qemuImg('create', '-f', 'qcow2', '-b', 'chain-mid.qcow2', '-F', 'qcow2', top, '3M');
    qemuIo(top, 'write -P 0x33 510k 3k', 'write -z 1510k 64k', 'write -P 0x44 2900k 100k');
    const expected = qemuContent(top, tmp.dir);
    expect((await engineContent(top)).equals(expected)).toBe(true);
    const img = await openImage(top, { readOnly: true });
    expect(img.format).toBe('qcow2');
    const probe = Buffer.alloc(3);
    await img.read(2 * 1024 * 1024 + 10, probe);
    expect([...probe]).toEqual([0, 0, 0]);
    await img.close();
    void pattern;
  });

  it('a backing file without a recorded format is probed', async () => {
    const base = join(tmp.dir, 'probe-base.qcow2');
    qemuImg('create', '-f', 'qcow2', base, '1M');
    qemuIo(base, 'write -P 0x77 0 64k');
    const top = join(tmp.dir, 'probe-top.qcow2');
    // qemu-img 7.2 insists on -F, so the engine's own create makes the format-less overlay.
    await createQcow2(top, { size: 1024 * 1024, backingFile: 'probe-base.qcow2' });
    expect(qemuImg('info', top)).not.toContain('backing file format');
    expect((await engineContent(top)).equals(qemuContent(top, tmp.dir))).toBe(true);
  });
});
