import { chmod, mkdir, readFile, rm, stat, truncate, open, writeFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromJsonSafe } from '../../src/snapshot/json-codec.js';
import { readSnapshot } from '../../src/snapshot/reader.js';
import { writeSnapshot } from '../../src/snapshot/writer.js';
import { SnapshotError } from '../../src/snapshot/errors.js';
import { READ_OPTIONS, MiB, PAGE, editVmJson, expectSnapshotError, nonZeroPageBytes, patternedRam, tempRoot, testInput } from './helpers.js';

const opts = READ_OPTIONS;
const SIZE = 16 * MiB;
let root: string;
let counter = 0;
beforeAll(async () => { root = await tempRoot(); });
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

/** A fresh, valid snapshot of SIZE bytes of patterned RAM. */
async function freshSnapshot(): Promise<{ dir: string; ram: Uint8Array }> {
  const dir = join(root, `snap-${counter++}`);
  const ram = patternedRam(SIZE);
  await writeSnapshot(dir, testInput(SIZE, [ram]));
  return { dir, ram };
}

describe('round trip', () => {
  it('reads back exactly what was written, holes included', async () => {
    const { dir, ram } = await freshSnapshot();
    const snap = await readSnapshot(dir, opts);
    expect(snap.document.format).toBe('tsvmm-snapshot');
    expect(snap.document.version).toBe('1.0');
    expect(snap.document.config.memory.size).toBe(SIZE);
    expect(snap.regions).toHaveLength(1);
    const region = snap.regions[0]!;
    expect(region).toMatchObject({ index: 0, guestBase: 0, size: SIZE, path: join(dir, 'memory-region-0') });
    expect(region.dataBytes).toBe(nonZeroPageBytes(ram));
    const onDisk = await readFile(region.path);
    expect(Buffer.compare(onDisk, Buffer.from(ram))).toBe(0);
    // Opaque states come back as written; toJsonSafe encodings decode.
    expect(fromJsonSafe(snap.document.vm)).toEqual({ clock: { clock: 0x12345678abcdefn }, irqchip: [] });
    expect(fromJsonSafe(snap.document.vcpus[0])).toEqual({ regs: { rip: 0x100000n }, xsave: new Uint8Array([0, 0, 0]) });
    expect(snap.document.devices.serial0).toEqual({ type: 'serial', state: { ier: 0, lcr: 3 } });
  });

  it('writes sparse files whose allocation follows the data, not the RAM size', async () => {
    const { dir, ram } = await freshSnapshot();
    const st = await stat(join(dir, 'memory-region-0'));
    expect(st.size).toBe(SIZE);
    const data = nonZeroPageBytes(ram);
    expect(data).toBeLessThan(SIZE / 4);
    expect(st.blocks * 512).toBeLessThanOrEqual(data + 64 * 1024);
  });

  it('handles RAM split around the 32-bit hole (two region files) without touching 3 GiB', async () => {
    const total = 3 * 1024 * MiB + 8 * MiB;
    const low = new Uint8Array(3 * 1024 * MiB); // lazily zero: only the extents below are read
    low.fill(0x11, 0, 2 * PAGE);
    low.fill(0x22, low.length - PAGE);
    const high = patternedRam(8 * MiB, 7);
    const input = testInput(total, [low, high]);
    input.memory[0]!.dataExtents = [[0, 2 * PAGE], [low.length - PAGE, PAGE]];
    const dir = join(root, 'two-regions');
    const res = await writeSnapshot(dir, input);
    expect(res.regions.map((r) => r.dataBytes)).toEqual([3 * PAGE, nonZeroPageBytes(high)]);
    const snap = await readSnapshot(dir, opts);
    expect(snap.regions.map((r) => [r.guestBase, r.size])).toEqual([[0, 3 * 1024 * MiB], [4 * 1024 * MiB, 8 * MiB]]);
    expect(snap.regions[0]!.dataExtents).toEqual([[0, 2 * PAGE], [low.length - PAGE, PAGE]]);
  });

  it('refuses to write a document the reader would refuse', async () => {
    const ram = new Uint8Array(SIZE);
    const bad = testInput(SIZE, [ram], { vcpus: [{}] });
    await expect(writeSnapshot(join(root, 'never'), bad)).rejects.toThrow(/vcpus holds 1 vCPU states but config.cpus.boot_vcpus is 2/);
    const badJson = testInput(SIZE, [ram], { vm: { tsc: 5n } as never });
    await expect(writeSnapshot(join(root, 'never'), badJson)).rejects.toThrow(/snapshot\.vm\.tsc: bigint/);
    await expect(stat(join(root, 'never'))).rejects.toThrow();
  });
});

describe('every damage is a SnapshotError naming the file', () => {
  it('missing vm.json', async () => {
    const { dir } = await freshSnapshot();
    await rm(join(dir, 'vm.json'));
    await expectSnapshotError(readSnapshot(dir, opts), 'vm.json', /is missing/);
  });

  it('missing snapshot directory', async () => {
    await expectSnapshotError(readSnapshot(join(root, 'nope'), opts), 'nope', /does not exist/);
  });

  it('missing memory region file', async () => {
    const { dir } = await freshSnapshot();
    await rm(join(dir, 'memory-region-0'));
    await expectSnapshotError(readSnapshot(dir, opts), 'memory-region-0', /is missing/);
  });

  it('truncated and extended memory region file', async () => {
    const { dir } = await freshSnapshot();
    await truncate(join(dir, 'memory-region-0'), SIZE - PAGE);
    await expectSnapshotError(readSnapshot(dir, opts), 'memory-region-0', /truncated: 16773120 bytes, vm.json declares 16777216/);
    await truncate(join(dir, 'memory-region-0'), SIZE + PAGE);
    await expectSnapshotError(readSnapshot(dir, opts), 'memory-region-0', /longer than declared/);
  });

  it('one flipped bit in a data page', async () => {
    const { dir } = await freshSnapshot();
    await flipBit(join(dir, 'memory-region-0'), 1 * MiB + 12345, 3);
    await expectSnapshotError(readSnapshot(dir, opts), 'memory-region-0', /is corrupt: crc32-pages-v1 checksum/);
  });

  it('one byte written into a hole (holes must stay holes)', async () => {
    const { dir } = await freshSnapshot();
    await flipBit(join(dir, 'memory-region-0'), 10 * MiB + 5, 0);
    await expectSnapshotError(readSnapshot(dir, opts), 'memory-region-0', /is corrupt/);
  });

  it('a data page moved to another offset', async () => {
    const { dir } = await freshSnapshot();
    const path = join(dir, 'memory-region-0');
    const fh = await open(path, 'r+');
    const page = Buffer.alloc(PAGE);
    await fh.read(page, 0, PAGE, 3 * MiB + 7 * PAGE);
    await fh.write(Buffer.alloc(PAGE), 0, PAGE, 3 * MiB + 7 * PAGE);
    await fh.write(page, 0, PAGE, 3 * MiB + 8 * PAGE);
    await fh.close();
    await expectSnapshotError(readSnapshot(dir, opts), 'memory-region-0', /is corrupt/);
  });

  it('one flipped bit in vm.json, and malformed JSON', async () => {
    const { dir } = await freshSnapshot();
    const file = join(dir, 'vm.json');
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.replace('"lcr": 3', '"lcr": 2')); // '3' ^ 1 = '2': one bit
    await expectSnapshotError(readSnapshot(dir, opts), 'vm.json', /is corrupt or was edited: its checksum/);
    await writeFile(file, text.slice(0, text.length / 2));
    await expectSnapshotError(readSnapshot(dir, opts), 'vm.json', /is not valid JSON/);
  });

  it('reformatting vm.json does not break its checksum', async () => {
    const { dir } = await freshSnapshot();
    const file = join(dir, 'vm.json');
    await writeFile(file, JSON.stringify(JSON.parse(await readFile(file, 'utf8'))));
    await expect(readSnapshot(dir, opts)).resolves.toBeDefined();
  });

  it('newer major and newer minor versions are refused; not-a-snapshot format too', async () => {
    const { dir } = await freshSnapshot();
    await editVmJson(dir, (d) => { d.version = '2.0'; }, true);
    await expectSnapshotError(readSnapshot(dir, opts), 'vm.json', /snapshot format 2\.0 is newer than this tsvmm understands \(1\.x\); upgrade tsvmm/);
    await editVmJson(dir, (d) => { d.version = '1.1'; });
    await expectSnapshotError(readSnapshot(dir, opts), 'vm.json', /1\.1 is newer than this tsvmm understands \(up to 1\.0\)/);
    await editVmJson(dir, (d) => { d.version = '1.0'; d.format = 'other'; });
    await expectSnapshotError(readSnapshot(dir, opts), 'vm.json', /format must be "tsvmm-snapshot"/);
  });

  it('region layout that does not match config.memory.size', async () => {
    const { dir } = await freshSnapshot();
    await editVmJson(dir, (d) => { d.config.memory.size = 32 * MiB; });
    await expectSnapshotError(readSnapshot(dir, opts), 'vm.json', /memory\.regions \(0x0\+0x1000000\) do not match the layout of config\.memory\.size 33554432/);
  });

  it('vCPU count different from config.cpus.boot_vcpus', async () => {
    const { dir } = await freshSnapshot();
    await editVmJson(dir, (d) => { d.vcpus.pop(); });
    await expectSnapshotError(readSnapshot(dir, opts), 'vm.json', /vcpus holds 1 vCPU states but config\.cpus\.boot_vcpus is 2/);
  });

  it('unknown device type', async () => {
    const { dir } = await freshSnapshot();
    await editVmJson(dir, (d) => { d.devices.gpu0 = { type: 'virtio-gpu', state: {} }; });
    await expectSnapshotError(readSnapshot(dir, opts), 'vm.json', /devices\.gpu0\.type "virtio-gpu" is not a device type this tsvmm can restore/);
  });

  it('schema errors name the field path', async () => {
    const { dir } = await freshSnapshot();
    await editVmJson(dir, (d) => { d.memory.regions[0].file = '../../etc/passwd'; });
    await expectSnapshotError(readSnapshot(dir, opts), 'vm.json', /memory\.regions\[0\]\.file must be "memory-region-0"/);
    await editVmJson(dir, (d) => { d.memory.regions[0].file = 'memory-region-0'; d.memory.regions[0].size = '16M'; });
    await expectSnapshotError(readSnapshot(dir, opts), 'vm.json', /memory\.regions\[0\]\.size must be an integer >= 4096, got "16M"/);
    await editVmJson(dir, (d) => { d.memory.regions[0].size = SIZE; d.disks[0].id = 'disk9'; });
    await expectSnapshotError(readSnapshot(dir, opts), 'vm.json', /disks \(disk9\) do not match config\.disks \(disk0\)/);
    await editVmJson(dir, (d) => { d.disks[0].id = 'disk0'; delete d.config.payload; });
    await expectSnapshotError(readSnapshot(dir, opts), 'vm.json', /config\.payload must be an object, got nothing/);
  });
});

describe('disks[].backing_files in a stored config', () => {
  it('is read as written; a disk stored before the field existed follows its backing files, as tsvmm did then', async () => {
    const { dir } = await freshSnapshot();
    await editVmJson(dir, (d) => { d.config.disks[0].backing_files = false; });
    expect((await readSnapshot(dir, opts)).document.config.disks[0]!.backing_files).toBeUndefined();
    await editVmJson(dir, (d) => { d.config.disks[0].backing_files = true; });
    expect((await readSnapshot(dir, opts)).document.config.disks[0]!.backing_files).toBe(true);
    await editVmJson(dir, (d) => { delete d.config.disks[0].backing_files; });
    expect((await readSnapshot(dir, opts)).document.config.disks[0]!.backing_files).toBe(true);
  });
});

describe('sections newer than a stored config', () => {
  it('a config stored without console or rng is from before those devices: restored with neither, as the VM had', async () => {
    const { dir } = await freshSnapshot();
    await editVmJson(dir, (d) => { delete d.config.console; delete d.config.rng; });
    const config = (await readSnapshot(dir, opts)).document.config;
    expect(config.console).toEqual({ mode: 'Off' });
    expect('rng' in config).toBe(false);
    await editVmJson(dir, (d) => { d.config.rng = { src: '/dev/urandom', iommu: false }; });
    expect((await readSnapshot(dir, opts)).document.config.rng).toEqual({ src: '/dev/urandom' });
  });
});

describe('net in a stored config', () => {
  it('is read as vm.create reads it, with the MAC the VM had and an inherited fd as recorded; the same rules refuse a bad entry', async () => {
    const { dir } = await freshSnapshot();
    const net = [{ id: '_net0', tap: 'tap0', mac: '12:34:56:78:9a:bc', ip: '10.0.0.1', mask: '255.255.255.0' }, { id: 'eth1', fd: 5, tap: 'tap5', mac: '12:34:56:78:9a:bd' }];
    await editVmJson(dir, (d) => { d.config.net = net; });
    expect((await readSnapshot(dir, opts)).document.config.net).toEqual(net);
    await editVmJson(dir, (d) => { delete d.config.net[0].mac; });
    await expectSnapshotError(readSnapshot(dir, opts), 'vm.json', /net\[0\]\.mac: required/);
    await editVmJson(dir, (d) => { d.config.net[0].mac = '13:34:56:78:9a:bc'; });
    await expectSnapshotError(readSnapshot(dir, opts), 'vm.json', /net\[0\]\.mac: "13:34:56:78:9a:bc" is a multicast address/);
    await editVmJson(dir, (d) => { d.config.net[0].mac = '12:34:56:78:9a:bc'; d.config.net[1].id = 'disk0'; });
    await expectSnapshotError(readSnapshot(dir, opts), 'vm.json', /net\[1\]\.id: "disk0" is a disk's id/);
  });
});

describe('read-only snapshot directories', () => {
  it('are read and verified without writing anything', async () => {
    const { dir } = await freshSnapshot();
    await chmod(root, 0o755);
    for (const name of await readdir(dir)) await chmod(join(dir, name), 0o444);
    await chmod(dir, 0o555);
    // root ignores permission bits, so drop to an unprivileged effective uid to make them bite.
    const asRoot = process.getuid?.() === 0 && typeof process.seteuid === 'function';
    if (asRoot) process.seteuid!(65534);
    try {
      await expect(writeFile(join(dir, 'probe'), 'x')).rejects.toMatchObject({ code: 'EACCES' });
      const snap = await readSnapshot(dir, opts);
      expect(snap.regions[0]!.dataBytes).toBeGreaterThan(0);
    } finally {
      if (asRoot) process.seteuid!(0);
      await chmod(dir, 0o755);
    }
  });
});

describe('replacing destinations', () => {
  it('replaces an existing snapshot or an empty directory; refuses anything else', async () => {
    const { dir } = await freshSnapshot();
    const ram2 = patternedRam(SIZE, 9);
    const res = await writeSnapshot(dir, testInput(SIZE, [ram2]));
    expect(res.replaced).toBe(true);
    expect(Buffer.compare(await readFile(join(dir, 'memory-region-0')), Buffer.from(ram2))).toBe(0);
    expect((await readdir(root)).filter((n) => n.includes('.tmp-') || n.includes('.old-'))).toEqual([]);

    const empty = join(root, 'empty');
    await mkdir(empty);
    await expect(writeSnapshot(empty, testInput(SIZE, [ram2]))).resolves.toMatchObject({ replaced: true });
    const other = join(root, 'other');
    await mkdir(other);
    await writeFile(join(other, 'precious.txt'), 'keep me');
    await expect(writeSnapshot(other, testInput(SIZE, [ram2]))).rejects.toThrow(SnapshotError);
    expect(await readFile(join(other, 'precious.txt'), 'utf8')).toBe('keep me');
    await expect(writeSnapshot(join(other, 'precious.txt'), testInput(SIZE, [ram2]))).rejects.toThrow(/is not a directory/);
  });
});

async function flipBit(path: string, offset: number, bit: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, offset);
    b[0]! ^= 1 << bit;
    await fh.write(b, 0, 1, offset);
  } finally {
    await fh.close();
  }
}

describe('keepFilesOpen', () => {
  it('returns handles on the verified files, which survive the directory being replaced', async () => {
    const { dir, ram } = await freshSnapshot();
    const snap = await readSnapshot(dir, { ...opts, keepFilesOpen: true });
    const fh = snap.regions[0]!.file!;
    try {
      await writeSnapshot(dir, testInput(SIZE, [patternedRam(SIZE, 5)]));
      const bytes = Buffer.alloc(SIZE);
      await fh.read(bytes, 0, SIZE, 0);
      expect(Buffer.compare(bytes, Buffer.from(ram))).toBe(0);
    } finally {
      await fh.close();
    }
    expect((await readSnapshot(dir, opts)).regions[0]!.file).toBeUndefined();
  });
});
