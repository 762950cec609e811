import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openImage } from '../../src/block/open.js';
import type { Qcow2Image } from '../../src/block/qcow2/image.js';
import { qemuCheck, qemuContent, qemuImg, qemuImgStatus, qemuIo, tempDir, writeSampleRaw } from '../block/qcow2/helpers.js';
import { CLEAN, img } from './run-img.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const at = (name: string): string => join(tmp.dir, name);



describe('create and info', () => {
  it.each([
    ['compat=1.1,cluster_size=4096,refcount_bits=1', 4096, 1, '1.1'],
    ['compat=0.10', 65536, 16, '0.10'],
    ['cluster_size=2M,refcount_bits=64', 2097152, 64, '1.1'],
    ['cluster_size=512', 512, 16, '1.1'],
  ])('-o %s passes qemu-img check and matches qemu-img info', async (opts, cluster, bits, compat) => {
    const file = at(`create-${cluster}-${bits}.qcow2`);
    expect((await img('create', '-f', 'qcow2', '-o', opts, file, '64M')).code).toBe(0);
    expect(qemuCheck(file)).toEqual(CLEAN);
    const theirs = JSON.parse(qemuImg('info', '--output=json', file)) as Record<string, unknown>;
    const ours = JSON.parse((await img('info', '--output=json', file)).out) as Record<string, unknown>;
    for (const key of ['virtual-size', 'cluster-size', 'format', 'dirty-flag', 'format-specific']) expect(ours[key]).toEqual(theirs[key]);
    expect((theirs['format-specific'] as { data: Record<string, unknown> }).data['compat']).toBe(compat);
    expect(theirs['cluster-size']).toBe(cluster);
  });

  it('backing files: -b needs -F, size defaults to the backing file, chains are described', async () => {
    const base = at('info-base.qcow2');
    qemuImg('create', '-f', 'qcow2', base, '3M');
    const missingF = await img('create', '-f', 'qcow2', '-b', 'info-base.qcow2', at('info-top.qcow2'));
    expect(missingF.code).toBe(1);
    expect(missingF.err).toMatch(/-F/);
    expect((await img('create', '-f', 'qcow2', '-b', 'info-base.qcow2', '-F', 'qcow2', at('info-top.qcow2'))).code).toBe(0);
    const theirs = JSON.parse(qemuImg('info', '--output=json', '--backing-chain', at('info-top.qcow2'))) as Record<string, unknown>[];
    const ours = JSON.parse((await img('info', '--output=json', '--backing-chain', at('info-top.qcow2'))).out) as Record<string, unknown>[];
    expect(ours).toHaveLength(2);
    for (const key of ['virtual-size', 'backing-filename', 'backing-filename-format', 'full-backing-filename']) expect(ours[0]![key]).toEqual(theirs[0]![key]);
    expect(ours[0]!['virtual-size']).toBe(3 * 1024 * 1024);
    expect(qemuCheck(at('info-top.qcow2'))).toEqual(CLEAN);
  });

  it('raw images, and bad input gives one line and a non-zero exit', async () => {
    expect((await img('create', '-f', 'raw', at('r.raw'), '5M')).code).toBe(0);
    expect(statSync(at('r.raw')).size).toBe(5 * 1024 * 1024);
    expect(JSON.parse((await img('info', '--output=json', at('r.raw'))).out)['format']).toBe('raw');
    for (const argv of [
      ['info', at('nope.qcow2')],
      ['create', '-f', 'qcow2', at('x.qcow2'), 'lots'],
      ['create', '-f', 'qcow2', '-o', 'cluster_size=1000', at('x.qcow2'), '1M'],
      ['check', '-f', 'qcow2', at('r.raw')],
      ['frobnicate'],
    ]) {
      const r = await img(...argv);
      expect(r.code).not.toBe(0);
      expect(r.err.trim().split('\n')).toHaveLength(1);
    }
    writeFileSync(at('corrupt.qcow2'), Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(100, 0xff)]));
    expect((await img('info', at('corrupt.qcow2'))).err).toMatch(/^tsvmm-img: .*(qcow2|cluster)/);
  });
});

describe('check', () => {
  it('exit codes 0 / 3 / 2 and repairs, agreeing with qemu-img', async () => {
    const file = at('check.qcow2');
    qemuImg('create', '-f', 'qcow2', file, '4M');
    qemuIo(file, 'write -P 1 0 1M');
    expect((await img('check', file)).code).toBe(0);
    const ours = JSON.parse((await img('check', '--output=json', file)).out);
    expect(ours).toEqual(JSON.parse(qemuImg('check', '--output=json', file)));
    // Leak: a cluster allocated (and written) that nothing references.
    const image = (await openImage(file, { readOnly: false })) as Qcow2Image;
    const leaked = await image.meta.refcounts.allocate(1);
    await image.meta.refcounts.writeBack();
    await image.meta.file.writeAt(leaked, new Uint8Array(65536).fill(1));
    await image.close();
    expect(qemuImgStatus('check', file).status).toBe(3);
    const leaky = await img('check', '--output=json', file);
    expect(leaky.code).toBe(3);
    expect(JSON.parse(leaky.out)['leaks']).toBe(1);
    expect((await img('check', '-r', 'leaks', file)).code).toBe(0);
    expect(qemuCheck(file)).toEqual(CLEAN);
    // Corruption: a data cluster's refcount dropped to 0.
    const again = (await openImage(file, { readOnly: false })) as Qcow2Image;
    const host = (await again.meta.lookup(3)) as { hostOffset: number };
    await again.meta.refcounts.set(host.hostOffset / 65536, 0);
    await again.meta.refcounts.writeBack();
    await again.close();
    expect(qemuImgStatus('check', file).status).toBe(2);
    expect((await img('check', file)).code).toBe(2);
    expect((await img('check', '-r', 'all', file)).code).toBe(0);
    expect(qemuCheck(file)).toEqual(CLEAN);
  });
});

describe('snapshot, commit, rebase', () => {
  it('snapshot -c/-l/-a/-d interoperate with qemu-img', async () => {
    const file = at('snap.qcow2');
    qemuImg('create', '-f', 'qcow2', file, '1M');
    qemuIo(file, 'write -P 7 0 64k');
    expect((await img('snapshot', '-c', 'one', file)).code).toBe(0);
    qemuIo(file, 'write -P 8 0 64k');
    expect(qemuImg('snapshot', '-l', file)).toMatch(/one/);
    qemuImg('snapshot', '-c', 'two', file);
    expect((await img('snapshot', '-l', file)).out).toMatch(/one[\s\S]*two/);
    expect((await img('snapshot', '-a', 'one', file)).code).toBe(0);
    expect(qemuContent(file, tmp.dir)[0]).toBe(7);
    expect((await img('snapshot', '-d', 'two', file)).code).toBe(0);
    expect(qemuImg('snapshot', '-l', file)).not.toMatch(/two/);
    expect(qemuCheck(file)).toEqual(CLEAN);
    expect((await img('snapshot', '-a', 'nope', file)).code).toBe(1);
  });

  it('commit into the backing file empties the top; -b BASE further down keeps it', async () => {
    writeSampleRaw(at('cm-base.raw'), 2 * 1024 * 1024);
    qemuImg('convert', '-O', 'qcow2', at('cm-base.raw'), at('cm-base.qcow2'));
    qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', 'cm-base.qcow2', '-F', 'qcow2', at('cm-mid.qcow2'));
    qemuIo(at('cm-mid.qcow2'), 'write -P 0x21 100k 300k', 'write -z 900k 64k');
    qemuImg('create', '-f', 'qcow2', '-b', 'cm-mid.qcow2', '-F', 'qcow2', at('cm-top.qcow2'));
    qemuIo(at('cm-top.qcow2'), 'write -P 0x31 1000 5000', 'write -P 0x32 1900k 148k');
    const expected = qemuContent(at('cm-top.qcow2'), tmp.dir);
    expect((await img('commit', '-b', at('cm-base.qcow2'), at('cm-top.qcow2'))).code).toBe(0);
    expect(qemuContent(at('cm-base.qcow2'), tmp.dir).equals(expected)).toBe(true);
    expect(qemuContent(at('cm-top.qcow2'), tmp.dir).equals(expected)).toBe(true);
    expect(qemuImg('map', '--output=json', at('cm-top.qcow2'))).toContain('"depth": 0, "present": true');
    for (const f of ['cm-base.qcow2', 'cm-mid.qcow2', 'cm-top.qcow2']) expect(qemuCheck(at(f))).toEqual(CLEAN);
    // Implicit base: the top is emptied afterwards.
    qemuIo(at('cm-top.qcow2'), 'write -P 0x41 0 64k');
    const expected2 = qemuContent(at('cm-top.qcow2'), tmp.dir);
    expect((await img('commit', '-p', at('cm-top.qcow2'))).code).toBe(0);
    expect(qemuImg('map', '--output=json', at('cm-top.qcow2'))).not.toContain('"depth": 0, "present": true');
    expect(qemuContent(at('cm-top.qcow2'), tmp.dir).equals(expected2)).toBe(true);
    for (const f of ['cm-mid.qcow2', 'cm-top.qcow2']) expect(qemuCheck(at(f))).toEqual(CLEAN);
  });

  it('rebase keeps the guest content (safe) or only the header (-u)', async () => {
    writeSampleRaw(at('rb-base.raw'), 1024 * 1024);
    qemuImg('create', '-f', 'qcow2', '-b', 'rb-base.raw', '-F', 'raw', at('rb-mid.qcow2'));
    qemuIo(at('rb-mid.qcow2'), 'write -P 0x51 64k 64k', 'write -z 512k 64k');
    qemuImg('create', '-f', 'qcow2', '-b', 'rb-mid.qcow2', '-F', 'qcow2', at('rb-top.qcow2'));
    qemuIo(at('rb-top.qcow2'), 'write -P 0x61 100k 10k');
    const expected = qemuContent(at('rb-top.qcow2'), tmp.dir);
    expect((await img('rebase', '-b', 'rb-base.raw', '-F', 'raw', at('rb-top.qcow2'))).code).toBe(0);
    expect(JSON.parse(qemuImg('info', '--output=json', at('rb-top.qcow2')))['backing-filename']).toBe('rb-base.raw');
    expect(qemuContent(at('rb-top.qcow2'), tmp.dir).equals(expected)).toBe(true);
    expect(qemuCheck(at('rb-top.qcow2'))).toEqual(CLEAN);
    expect((await img('rebase', '-u', '-b', 'rb-mid.qcow2', '-F', 'qcow2', at('rb-top.qcow2'))).code).toBe(0);
    expect(JSON.parse(qemuImg('info', '--output=json', at('rb-top.qcow2')))['backing-filename-format']).toBe('qcow2');
    expect(qemuCheck(at('rb-top.qcow2'))).toEqual(CLEAN);
    expect((await img('rebase', '-b', '', at('rb-top.qcow2'))).code).toBe(0);
    expect(qemuContent(at('rb-top.qcow2'), tmp.dir).equals(qemuContent(at('rb-top.qcow2'), tmp.dir))).toBe(true);
  });
});

describe('convert, map, compare', () => {
  it('convert a chain to raw (sparse) and to qcow2 variants', async () => {
    writeSampleRaw(at('cv-base.raw'), 3 * 1024 * 1024);
    qemuImg('create', '-f', 'qcow2', '-b', 'cv-base.raw', '-F', 'raw', at('cv-top.qcow2'), '4M');
    qemuIo(at('cv-top.qcow2'), 'write -P 0x71 10k 50k', 'write -z 2M 128k', 'write -P 0x72 3900k 10k');
    const expected = qemuContent(at('cv-top.qcow2'), tmp.dir);
    expect((await img('convert', '-p', '-O', 'raw', at('cv-top.qcow2'), at('cv-out.raw'))).code).toBe(0);
    expect(readFileSync(at('cv-out.raw')).equals(expected)).toBe(true);
    expect(statSync(at('cv-out.raw')).blocks * 512).toBeLessThan(expected.byteLength);
    for (const o of ['cluster_size=512', 'compat=0.10', 'cluster_size=2M,refcount_bits=8']) {
      const out = at(`cv-${o.replace(/\W/g, '')}.qcow2`);
      expect((await img('convert', '-O', 'qcow2', '-o', o, at('cv-top.qcow2'), out)).code).toBe(0);
      expect(qemuCheck(out)).toEqual(CLEAN);
      expect(qemuImgStatus('compare', out, at('cv-out.raw')).status).toBe(0);
    }
  });

  it('map --output=json matches qemu-img map', async () => {
    qemuImg('create', '-f', 'qcow2', at('mp-base.qcow2'), '2M');
    qemuIo(at('mp-base.qcow2'), 'write -P 1 0 200k', 'write -P 2 1M 64k');
    qemuImg('create', '-f', 'qcow2', '-b', 'mp-base.qcow2', '-F', 'qcow2', at('mp-top.qcow2'), '3M');
    qemuIo(at('mp-top.qcow2'), 'write -P 3 64k 64k', 'write -z 1M 64k', 'write -P 4 2500k 4k');
    qemuImg('convert', '-c', '-O', 'qcow2', at('mp-base.qcow2'), at('mp-c.qcow2'));
    for (const f of ['mp-top.qcow2', 'mp-base.qcow2', 'mp-c.qcow2']) {
      expect((await img('map', '--output=json', at(f))).out).toBe(qemuImg('map', '--output=json', at(f)));
    }
  });

  it('compare exit codes and the mismatch offset', async () => {
    qemuImg('create', '-f', 'qcow2', at('cp-a.qcow2'), '1M');
    qemuIo(at('cp-a.qcow2'), 'write -P 9 0 100k');
    qemuImg('convert', '-O', 'raw', at('cp-a.qcow2'), at('cp-b.raw'));
    expect((await img('compare', at('cp-a.qcow2'), at('cp-b.raw'))).code).toBe(0);
    qemuIo(at('cp-a.qcow2'), 'write -P 10 77777 1');
    const r = await img('compare', '-f', 'qcow2', '-F', 'raw', at('cp-a.qcow2'), at('cp-b.raw'));
    expect(r.code).toBe(1);
    // Both tools name the first differing 512-byte sector.
    expect(r.out).toContain('Content mismatch at offset 77312!');
    expect(qemuImgStatus('compare', at('cp-a.qcow2'), at('cp-b.raw')).stdout).toContain('offset 77312!');
    expect((await img('compare', at('cp-a.qcow2'), at('missing.raw'))).code).toBe(2);
  });
});
