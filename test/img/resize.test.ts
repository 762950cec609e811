import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../src/block/qcow2/image.js';
import { targetSize } from '../../src/img/resize.js';
import { qemuCheck, qemuImg, qemuIo, tempDir } from '../block/qcow2/helpers.js';
import { CLEAN, img } from './run-img.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const at = (name: string): string => join(tmp.dir, name);
const MiB = 1024 * 1024;


/** The header fields of interest, from an image opened and closed again. */
async function headerOf(file: string): Promise<{ l1TableOffset: number; l1Size: number }> {
  const image = await Qcow2Image.open(file, { readOnly: true });
  const { l1TableOffset, l1Size } = image.meta.header;
  await image.close();
  return { l1TableOffset, l1Size };
}

const virtualSize = (file: string): number => (JSON.parse(qemuImg('info', '--output=json', file)) as { 'virtual-size': number })['virtual-size'];

/** qemu-io checks each pattern itself and exits 1 ("Pattern verification failed") on a mismatch. */
function qemuReads(file: string, ...reads: string[]): string {
  try {
    qemuIo(file, ...reads.map((r) => `read -P ${r}`));
    return '';
  } catch (e) {
    return String(e);
  }
}

describe('tsvmm-img resize', () => {
  it('sizes: absolute, +grow, -shrink, in qemu-img units', () => {
    expect(targetSize('20G', 1)).toBe(20 * 1024 ** 3);
    expect(targetSize('+512M', MiB)).toBe(513 * MiB);
    expect(targetSize('-1M', 3 * MiB)).toBe(2 * MiB);
    expect(() => targetSize('-4M', 3 * MiB)).toThrow(/smaller than nothing/);
    expect(() => targetSize('lots', 1)).toThrow(/not a size/);
  });

  it('grows a qcow2 image whose L1 table must move: data kept, new space zero, no leaks', async () => {
    const file = at('grow-l1.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', file, '64M');
    qemuIo(file, 'write -P 0x5a 0 1M', 'write -P 0x6b 60M 4M');
    const before = await headerOf(file);
    expect((await img('resize', file, '+1G')).out).toBe('Image resized.\n');
    expect(virtualSize(file)).toBe(64 * MiB + 1024 ** 3);
    expect(qemuCheck(file)).toEqual(CLEAN); // the old L1 table went back to the allocator
    expect(qemuReads(file, '0x5a 0 1M', '0x6b 60M 4M', '0 64M 64M', '0 1000M 88M')).toBe('');
    const after = await headerOf(file);
    expect(after.l1TableOffset).not.toBe(before.l1TableOffset);
    expect(after.l1Size).toBeGreaterThan(before.l1Size);
    const image = await Qcow2Image.open(file, { readOnly: false });
    await image.write(1050 * MiB, Buffer.alloc(MiB, 0x7c)); // past the old end: needs the new L1 entries
    await image.close();
    expect(qemuReads(file, '0x7c 1050M 1M', '0x5a 0 1M')).toBe('');
    expect(qemuCheck(file)).toEqual(CLEAN);
  });

  it('grows a qcow2 image within its L1 table with one header write', async () => {
    const file = at('grow-in-place.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', file, '1100M'); // 64 KiB clusters: one L1 entry per 512 MiB, 3 entries
    qemuIo(file, 'write -P 0x33 1099M 1M');
    const l1 = (await headerOf(file)).l1TableOffset;
    expect((await img('resize', file, '1400M')).code).toBe(0);
    expect(virtualSize(file)).toBe(1400 * MiB);
    expect((await headerOf(file)).l1TableOffset).toBe(l1);
    expect(qemuReads(file, '0x33 1099M 1M', '0 1100M 300M')).toBe('');
    expect(qemuCheck(file)).toEqual(CLEAN);
  });

  it('raw images grow and, with --shrink only, shrink; negative sizes parse as qemu-img does', async () => {
    const file = at('disk.raw');
    qemuImg('create', '-q', '-f', 'raw', file, '10M');
    expect((await img('resize', '-f', 'raw', file, '+6M')).code).toBe(0);
    expect(statSync(file).size).toBe(16 * MiB);
    const refused = await img('resize', file, '-2M');
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/^tsvmm-img: .*use --shrink/);
    expect(statSync(file).size).toBe(16 * MiB);
    expect((await img('resize', '--shrink', file, '-2M')).code).toBe(0);
    expect(statSync(file).size).toBe(14 * MiB);
  });

  it('refuses clearly: qcow2 shrink, internal snapshots, sizes not a multiple of 512, a missing size', async () => {
    const file = at('refuse.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', file, '64M');
    expect((await img('resize', '--shrink', file, '32M')).err).toMatch(/cannot shrink qcow2/);
    expect((await img('resize', file, '+100')).err).toMatch(/not a multiple of 512/);
    expect((await img('resize', file)).err).toMatch(/give FILE and SIZE/);
    qemuImg('snapshot', '-c', 's1', file);
    expect((await img('resize', file, '+1M')).err).toMatch(/internal snapshot.*delete them/);
    expect(virtualSize(file)).toBe(64 * MiB);
    expect(qemuCheck(file)).toEqual(CLEAN);
  });
});
