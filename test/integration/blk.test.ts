/**
 * virtio-blk end to end on /dev/kvm: the tiny kernel's driver (guest-images/README.md) against
 * tsvmm's disks, checked from the host side — the image file's bytes, the CRCs the guest prints,
 * the image lock as other processes (a second tsvmm, qemu-img, qemu-io) see it, the API counters.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crcHex, expectedPattern, noise, parseBlkDev, parseBlkTimings, patternWordAt } from '../support/blk-disk.js';
import { apiOk, waitForApi } from '../support/snapshot-vm.js';
import { runTsvmm, type TsvmmResult } from '../support/tiny-console.js';
import { TsvmmProcess, run, tinyElf } from '../support/tsvmm-process.js';
import { deadline } from '../support/timing.js';
import { setupStep } from '../support/nested-retry.js';

const MiB = 1 << 20;

function tinyArgs(cmdline: string, disks: string[], extra: string[] = []): string[] {
  return ['--kernel', tinyElf, '--serial', 'tty', '--memory', 'size=128M', '--cmdline', cmdline, ...disks.flatMap((d) => ['--disk', d]), ...extra];
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** The run ended by the guest's own power-off with `status`, and said so as its last line. */
function expectExit(r: TsvmmResult, status: number): void {
  expect(r.lines.at(-1), r.stdout + r.stderr).toBe(`tiny: exit ${status}`);
  expect(r.code, r.stderr).toBe(status);
}

/** A usage error: non-zero status, one line on stderr naming the path, no stack trace. */
function expectOneLineError(r: TsvmmResult, ...fragments: string[]): void {
  expect(r.code).not.toBe(0);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  for (const f of fragments) expect(lines[0]).toContain(f);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stdout).not.toContain('tiny: boot=');
}

describe('virtio-blk with the tiny kernel', () => {
  let dir = '';
  const file = (name: string): string => join(dir, name);

  beforeAll(() => {
    execFileSync('make', ['-s', '-C', join(tinyElf, '..', '..')], { stdio: 'inherit' });
    dir = mkdtempSync(join(tmpdir(), 'tsvmm-blk-'));
  });

  afterAll(() => {
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it('guest writes land in the host file at the right offsets, and nothing past them changes', async () => {
    const path = file('write.raw');
    const before = noise(16 * MiB, 1);
    writeFileSync(path, before);
    const r = await runTsvmm(tinyArgs('tiny.blk=write:8', [`path=${path}`]));
    expectExit(r, 0);
    expect(parseBlkDev(r.lines)).toEqual({ index: 0, address: 0xd0000000, capacitySectors: 16 * MiB / 512, blockSize: 512, readOnly: false, flush: true });

    const after = readFileSync(path);
    expect(after.length).toBe(16 * MiB);
    // Spot checks first (a clear message for the common failure), then every byte.
    for (const o of [0, 8, 504, 512, 4096, 65536 - 8, 65536, 3 * MiB + 520, 8 * MiB - 8]) {
      expect(after.readBigUInt64LE(o), `word at ${o}`).toBe(patternWordAt(o));
    }
    expect(after.subarray(0, 8 * MiB).equals(expectedPattern(8 * MiB))).toBe(true);
    expect(after.subarray(8 * MiB).equals(before.subarray(8 * MiB))).toBe(true);
    expect(r.lines).toContain(`blk: write 8 MiB ok crc=${crcHex(after.subarray(0, 8 * MiB))}`);
  });

  it('the guest reads a host-prepared image with the CRC the host computes', async () => {
    const path = file('read.raw');
    const content = noise(6 * MiB, 2);
    writeFileSync(path, content);
    const r = await runTsvmm(tinyArgs('tiny.blk=read:6,read:1,randread:200', [`path=${path}`]));
    expectExit(r, 0);
    expect(r.lines).toContain(`blk: read 6 MiB crc=${crcHex(content)}`);
    expect(r.lines).toContain(`blk: read 1 MiB crc=${crcHex(content.subarray(0, MiB))}`);
    expect(parseBlkTimings(r.lines)).toEqual([{ kind: 'randread', bytes: 200 * 4096, usec: expect.any(Number) as number }]);
    expect(readFileSync(path).equals(content)).toBe(true); // reads write nothing
  });

  it('a read-only disk is offered as RO, the guest write is refused, and the file is unchanged', async () => {
    const path = file('ro.raw');
    writeFileSync(path, noise(2 * MiB, 3));
    const hash = sha256(path);
    const mtime = statSync(path).mtimeMs;
    const r = await runTsvmm(tinyArgs('tiny.blk=read:2,write:1', [`path=${path},readonly=on`]));
    // The driver sees VIRTIO_BLK_F_RO and refuses (the device's own IOERR for a write to a
    // read-only disk is covered by the virtio-blk unit tests with hand-built queues).
    expect(parseBlkDev(r.lines).readOnly).toBe(true);
    expect(r.lines).toContain(`blk: read 2 MiB crc=${crcHex(readFileSync(path))}`);
    expect(r.lines).toContain('blk: ro');
    expectExit(r, 1);
    expect(sha256(path)).toBe(hash);
    expect(statSync(path).mtimeMs).toBe(mtime);
  });

  it('two disks at once: each is its own device with its own content', async () => {
    const a = file('two-a.raw');
    const b = file('two-b.raw');
    const contentA = noise(4 * MiB, 4);
    const contentB = noise(3 * MiB, 5);
    writeFileSync(a, contentA);
    writeFileSync(b, contentB);
    const disks = [`path=${a},id=first`, `path=${b},id=second`];

    const r1 = await runTsvmm(tinyArgs('tiny.blk_dev=1 tiny.blk=read:3,write:1', disks));
    expectExit(r1, 0);
    expect(parseBlkDev(r1.lines)).toMatchObject({ index: 1, address: 0xd0001000, capacitySectors: 3 * MiB / 512 });
    expect(r1.lines).toContain(`blk: read 3 MiB crc=${crcHex(contentB)}`);
    const afterB = readFileSync(b);
    expect(afterB.subarray(0, MiB).equals(expectedPattern(MiB))).toBe(true);
    expect(afterB.subarray(MiB).equals(contentB.subarray(MiB))).toBe(true);
    expect(readFileSync(a).equals(contentA)).toBe(true);

    const r0 = await runTsvmm(tinyArgs('tiny.blk_dev=0 tiny.blk=read:4', disks));
    expectExit(r0, 0);
    expect(parseBlkDev(r0.lines)).toMatchObject({ index: 0, address: 0xd0000000, capacitySectors: 4 * MiB / 512 });
    expect(r0.lines).toContain(`blk: read 4 MiB crc=${crcHex(contentA)}`);

    const r2 = await runTsvmm(tinyArgs('tiny.blk_dev=2 tiny.blk=read:1', disks));
    expect(r2.lines).toContain('blk: no virtio-blk device 2 (found 2)');
    expectExit(r2, 1);
  });

  it('eight disks at once: the last one still does I/O (each disk parks a libuv pool thread on its notify eventfd)', async () => {
    const paths = Array.from({ length: 8 }, (_, i) => file(`eight-${i}.raw`));
    paths.forEach((p, i) => writeFileSync(p, noise(2 * MiB, 20 + i)));
    const r = await runTsvmm(tinyArgs('tiny.blk_dev=7 tiny.blk=read:2,write:1', paths.map((p) => `path=${p}`)), deadline(25_000));
    expectExit(r, 0);
    expect(parseBlkDev(r.lines)).toMatchObject({ index: 7, address: 0xd0007000 });
    expect(r.lines).toContain(`blk: read 2 MiB crc=${crcHex(noise(2 * MiB, 27))}`);
    expect(readFileSync(paths[7]!).subarray(0, MiB).equals(expectedPattern(MiB))).toBe(true);
    for (let i = 0; i < 7; i++) expect(readFileSync(paths[i]!).equals(noise(2 * MiB, 20 + i)), `disk ${i}`).toBe(true);
  });

  it('flush: after the guest flushed, SIGKILL of the VMM loses nothing', async () => {
    // SIGKILL keeps no chance to write anything more, so what the file holds afterwards is what
    // the VMM had written by the time the guest saw its FLUSH complete. (Durability against a
    // host crash — the fdatasync itself — cannot be observed from a test.)
    const path = file('flush.raw');
    const before = noise(8 * MiB, 6);
    writeFileSync(path, before);
    const p = new TsvmmProcess(tinyArgs('tiny.blk=write:4,flush tiny.ticks tiny.tick_ms=50', [`path=${path}`]));
    try {
      await p.waitFor(/^blk: flush ok$/m);
      p.kill('SIGKILL');
      expect((await p.exited).signal).toBe('SIGKILL');
    } finally {
      p.kill('SIGKILL');
    }
    const after = readFileSync(path);
    expect(after.subarray(0, 4 * MiB).equals(expectedPattern(4 * MiB))).toBe(true);
    expect(after.subarray(4 * MiB).equals(before.subarray(4 * MiB))).toBe(true);
  });

  describe('a running VM holds its writable disk', () => {
    let path = '';
    let holder: TsvmmProcess | undefined;

    beforeAll(async () => {
      path = file('locked.raw');
      writeFileSync(path, noise(4 * MiB, 7));
      await setupStep('test/integration/blk.test.ts', 'start the VM that holds the disk', async () => {
        holder?.kill('SIGKILL');
        await holder?.exited;
        holder = new TsvmmProcess(tinyArgs('tiny.blk=read:1 tiny.ticks tiny.tick_ms=100', [`path=${path}`]));
        await holder.waitFor(/^blk: read 1 MiB crc=/m);
      });
    });

    afterAll(async () => {
      holder?.kill('SIGKILL');
      await holder?.exited;
    });

    it('a second tsvmm cannot open it, writable or read-only; the error names the holder pid', async () => {
      const pid = holder!.child.pid!;
      for (const spec of [`path=${path}`, `path=${path},readonly=on`]) {
        const r = await runTsvmm(tinyArgs('tiny.blk=read:1', [spec]));
        expectOneLineError(r, path, `locked by pid ${pid} `);
      }
    });

    it('qemu-io and qemu-img cannot open it for writing ("Failed to get ... lock")', async () => {
      const hash = sha256(path);
      const io = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0xaa 0 4096', path]);
      expect(io.code).not.toBe(0);
      expect(io.stderr).toMatch(/Failed to get "write" lock/);
      const img = await run('qemu-img', ['resize', '-f', 'raw', path, '8M']);
      expect(img.code).not.toBe(0);
      expect(img.stderr).toMatch(/Failed to get "(write|resize)" lock/);
      expect(sha256(path)).toBe(hash);
      expect(statSync(path).size).toBe(4 * MiB);
    });

    it('once the VM is gone the lock is gone with it', async () => {
      holder!.kill('SIGKILL');
      await holder!.exited;
      const io = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0xaa 0 4096', path]);
      expect(io.code, io.stderr).toBe(0);
      expect(readFileSync(path).subarray(0, 4096).every((b) => b === 0xaa)).toBe(true);
    });
  });

  it('--disk on a missing file, a directory or a device: one clear line, no VM', async () => {
    const d = file('a-directory');
    mkdirSync(d);
    expectOneLineError(await runTsvmm(tinyArgs('x', ['path=/nonexistent/disk.raw'])), '/nonexistent/disk.raw', 'no such file');
    expectOneLineError(await runTsvmm(tinyArgs('x', [`path=${d}`])), d, 'is a directory');
    expectOneLineError(await runTsvmm(tinyArgs('x', [`path=${d},readonly=on`])), d, 'is a directory');
    expectOneLineError(await runTsvmm(tinyArgs('x', ['path=/dev/null,readonly=on'])), '/dev/null', 'not a regular file');
  });

  it('a disk whose size is not a multiple of 512 bytes: whole sectors work, the tail is untouched', async () => {
    const path = file('odd.raw');
    const size = 2 * MiB + 300;
    const before = noise(size, 8);
    writeFileSync(path, before);
    const r = await runTsvmm(tinyArgs('tiny.blk=write:2,read:2,randread:300', [`path=${path}`]));
    expectExit(r, 0);
    expect(parseBlkDev(r.lines).capacitySectors).toBe(Math.floor(size / 512));
    const after = readFileSync(path);
    expect(after.length).toBe(size);
    expect(after.subarray(0, 2 * MiB).equals(expectedPattern(2 * MiB))).toBe(true);
    expect(after.subarray(2 * MiB).equals(before.subarray(2 * MiB))).toBe(true);
    expect(r.lines).toContain(`blk: read 2 MiB crc=${crcHex(after.subarray(0, 2 * MiB))}`);
  });

  it('vm.counters reports the read/write/flush operations and bytes of the workload', async () => {
    // The serial number (serial=) is only visible through GET_ID, which the tiny driver does not
    // send; the device's GET_ID answer is covered by the virtio-blk unit tests.
    const path = file('counters.raw');
    writeFileSync(path, noise(4 * MiB, 9));
    const sock = file('counters.sock');
    const p = new TsvmmProcess(tinyArgs('tiny.blk=write:2,read:3,flush tiny.ticks tiny.tick_ms=100', [`path=${path},id=sys,serial=SN-1234`], ['--api-socket', sock]));
    try {
      await waitForApi(sock, p);
      await p.waitFor(/^blk: flush ok$/m);
      const counters = (await apiOk(sock, 'GET', 'vm.counters')).json as Record<string, Record<string, number>>;
      // write:2 = 2 MiB written then read back; read:3 = 3 MiB; all in 64 KiB requests.
      const sys = counters['sys']!;
      expect(sys).toMatchObject({
        read_ops: 5 * 16, read_bytes: 5 * MiB, write_ops: 2 * 16, write_bytes: 2 * MiB,
        flush_ops: 1, discard_ops: 0, write_zeroes_ops: 0, errors: 0,
      });
      // Cloud Hypervisor's latency fields (microseconds): ordered, and measured.
      for (const kind of ['read', 'write']) {
        const [min, avg, max] = [sys[`${kind}_latency_min`]!, sys[`${kind}_latency_avg`]!, sys[`${kind}_latency_max`]!];
        expect(min, kind).toBeGreaterThan(0);
        expect(min <= avg && avg <= max, `${kind}: ${min} ${avg} ${max}`).toBe(true);
      }
    } finally {
      p.kill('SIGKILL');
      await p.exited;
    }
  });

  it('a qcow2 overlay over a raw base (made by qemu-img): reads fall through, writes stay in the overlay', async () => {
    const base = file('base.raw');
    const overlay = file('overlay.qcow2');
    const content = noise(4 * MiB, 10);
    writeFileSync(base, content);
    const made = await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', overlay]);
    expect(made.code, made.stderr).toBe(0);

    // Cloud Hypervisor's default: a backing file named inside an image is followed only when asked.
    const refused = await runTsvmm(tinyArgs('tiny.blk=read:2', [`path=${overlay}`]));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/names a backing file \(.*base\.raw\); tsvmm follows backing files only with backing_files=on/);

    const r = await runTsvmm(tinyArgs('tiny.blk=read:2,write:1,read:2', [`path=${overlay},backing_files=on`]));
    expectExit(r, 0);
    const expected = Buffer.concat([expectedPattern(MiB), content.subarray(MiB)]);
    expect(r.lines).toEqual(expect.arrayContaining([
      `blk: read 2 MiB crc=${crcHex(content.subarray(0, 2 * MiB))}`,
      `blk: write 1 MiB ok crc=${crcHex(expected.subarray(0, MiB))}`,
      `blk: read 2 MiB crc=${crcHex(expected.subarray(0, 2 * MiB))}`,
    ]));
    expect(readFileSync(base).equals(content)).toBe(true);

    const check = await run('qemu-img', ['check', overlay]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    const flat = file('overlay-flat.raw');
    const conv = await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', overlay, flat]);
    expect(conv.code, conv.stderr).toBe(0);
    expect(readFileSync(flat).equals(expected)).toBe(true);
  });
});
