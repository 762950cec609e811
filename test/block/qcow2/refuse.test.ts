import { openSync, readFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../src/block/qcow2/errors.js';
import { Qcow2Image } from '../../../src/block/qcow2/image.js';
import { openImage } from '../../../src/block/open.js';
import { qemuCheck, qemuContent, qemuImg, qemuIo, tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

function patch(file: string, at: number, bytes: number[]): void {
  const fd = openSync(file, 'r+');
  writeSync(fd, Buffer.from(bytes), 0, bytes.length, at);
  closeSync(fd);
}

function fresh(name: string): string {
  const file = join(tmp.dir, `${name}.qcow2`);
  qemuImg('create', '-f', 'qcow2', file, '1M');
  qemuIo(file, 'write -P 0x42 0 64k');
  return file;
}

async function refusal(file: string, readOnly = true): Promise<Qcow2Error> {
  const err = await openImage(file, { readOnly }).then(
    async (img) => {
      await img.close();
      return null;
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Qcow2Error);
  return err as Qcow2Error;
}

describe('unsupported features are refused by name', () => {
  it('encryption', async () => {
    const file = fresh('crypt');
    patch(file, 32, [0, 0, 0, 2]);
    expect((await refusal(file)).message).toMatch(/encryption \(crypt_method LUKS\)/);
  });
  it('external data file', async () => {
    const file = fresh('datafile');
    patch(file, 79, [1 << 2]);
    expect((await refusal(file)).message).toMatch(/external data file/);
  });
  it('zstd compression type', async () => {
    const file = fresh('zstd');
    patch(file, 79, [1 << 3]);
    patch(file, 104, [1]);
    const err = await refusal(file);
    expect(err.message).toMatch(/compression type zstd/);
    expect(err.details?.['feature']).toBe('compression-type');
  });
  it('extended L2 entries', async () => {
    const file = fresh('extl2');
    patch(file, 79, [1 << 4]);
    expect((await refusal(file)).message).toMatch(/extended L2 entries/);
  });
  it('an unknown incompatible bit, named from the feature name table', async () => {
    const file = fresh('unknown');
    const head = readFileSync(file).subarray(0, 65536);
    // Re-label the table's "extended L2 entries" entry as bit 9 called "magic widgets".
    const at = head.indexOf(Buffer.from('extended L2 entries'));
    expect(at).toBeGreaterThan(0);
    patch(file, at - 1, [9, ...Buffer.from('magic widgets\0\0\0\0\0\0')]);
    patch(file, 78, [1 << 1]); // bit 9
    expect((await refusal(file)).message).toMatch(/incompatible feature bit 9 "magic widgets"/);
  });
  it('bad magic, bad version, bad cluster size', async () => {
    const file = fresh('badver');
    patch(file, 4, [0, 0, 0, 4]);
    expect((await refusal(file)).message).toMatch(/version 4/);
    const bits = fresh('badbits');
    patch(bits, 20, [0, 0, 0, 30]);
    expect((await refusal(bits)).message).toMatch(/cluster size/);
  });
});

describe('header bits with defined handling', () => {
  it('corrupt bit: read-only opens work, writable opens are refused', async () => {
    const file = fresh('corrupt');
    patch(file, 79, [1 << 1]);
    const ro = await openImage(file, { readOnly: true });
    const b = Buffer.alloc(4);
    await ro.read(0, b);
    expect([...b]).toEqual([0x42, 0x42, 0x42, 0x42]);
    await ro.close();
    expect((await refusal(file, false)).message).toMatch(/marked corrupt.*read-only/);
  });

  it('dirty bit: refcounts are rebuilt before writing', async () => {
    const file = join(tmp.dir, 'dirty.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'lazy_refcounts=on', file, '1M');
    qemuIo(file, 'write -P 0x42 0 64k', 'write -P 0x43 512k 64k');
    // Simulate a crash with lazy refcounts: dirty bit set, the data clusters' refcounts lost.
    patch(file, 79, [1]);
    const img = (await openImage(file, { readOnly: true })) as Qcow2Image;
    const block = img.meta.refcounts.blockOffset(0);
    await img.close();
    const firstData = 5; // header, refcount table, refcount block, L1, L2, then data
    patch(file, block + firstData * 2, [0, 0, 0, 0]);
    expect(qemuCheck(file).corruptions).toBeGreaterThan(0);
    const rw = await openImage(file, { readOnly: false });
    await rw.write(128 * 1024, Buffer.alloc(4096, 0x44));
    await rw.close();
    expect(qemuCheck(file)).toEqual({ corruptions: 0, leaks: 0, checkErrors: 0, status: 0 });
    expect(readFileSync(file)[79]! & 1).toBe(0);
    const content = qemuContent(file, tmp.dir);
    expect(content[0]).toBe(0x42);
    expect(content[512 * 1024]).toBe(0x43);
    expect(content[128 * 1024]).toBe(0x44);
  });

  it('persistent bitmaps: the autoclear bit is cleared on the first write, and reported', async () => {
    const file = fresh('bitmaps');
    qemuImg('bitmap', '--add', file, 'b0');
    expect(qemuImg('info', file)).toContain('b0');
    const img = (await openImage(file, { readOnly: false })) as Qcow2Image;
    expect(img.meta.header.autoclear & 1n).toBe(1n);
    await img.write(0, Buffer.alloc(512, 1));
    expect(img.meta.bitmapsInvalidated).toBe(true);
    await img.close();
    expect(readFileSync(file)[95]! & 1).toBe(0);
    // qemu-img now treats the bitmaps as inconsistent rather than trusting stale ones.
    expect(qemuImg('info', file)).not.toContain('name: b0');
  });
});
