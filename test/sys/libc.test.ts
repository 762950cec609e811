import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { SysError, errnoName, errnoValue } from '../../src/sys/errno.js';
import {
  close, ftruncate, getpid, gettid, lseek, madvise, memfdCreate, mmap, munmap, ofdGetLock,
  ofdSetLock, open, pread, readAsync, pthreadKill, pthreadSelf, pwrite, read, viewAt, write,
  F_RDLCK, F_UNLCK, F_WRLCK, MADV_DONTNEED, MAP_ANONYMOUS,
  MAP_PRIVATE, MAP_SHARED, MAX_VIEW_BYTES, O_CREAT, O_RDWR, PROT_READ, PROT_WRITE, SEEK_DATA, SEEK_HOLE,
} from '../../src/sys/libc.js';
import { fallocateAsync, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../../src/sys/falloc.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-sys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('errno and SysError', () => {
  it('maps errno numbers to names and back', () => {
    expect(errnoName(2)).toBe('ENOENT');
    expect(errnoValue('EINTR')).toBe(4);
    expect(errnoName(99999)).toBe('errno 99999');
  });

  it('throws SysError with code ESYS, errno and syscall name', () => {
    let err: unknown;
    try { close(-1); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(SysError);
    const s = err as SysError;
    expect(s.code).toBe('ESYS');
    expect(s.errno).toBe(errnoValue('EBADF'));
    expect(s.syscall).toBe('close');
    expect(s.message).toContain('EBADF');
  });

  it('reports ENOENT from open with the path', () => {
    expect(() => open(join(dir, 'missing'), O_RDWR)).toThrow(/open \(.*missing\) failed: ENOENT/);
  });
});

describe('files', () => {
  it('read/write/pread/pwrite round-trip', () => {
    const fd = open(join(dir, 'rw'), O_RDWR | O_CREAT);
    try {
      expect(write(fd, new TextEncoder().encode('hello world'))).toBe(11);
      expect(pwrite(fd, new TextEncoder().encode('W'), 6)).toBe(1);
      const b = new Uint8Array(11);
      expect(pread(fd, b, 0)).toBe(11);
      expect(new TextDecoder().decode(b)).toBe('hello World');
      expect(lseek(fd, 0, 0)).toBe(0);
      const c = new Uint8Array(5);
      expect(read(fd, c)).toBe(5);
      expect(new TextDecoder().decode(c)).toBe('hello');
    } finally { close(fd); }
  });

  it('memfd + ftruncate + fallocate punch hole + SEEK_DATA/SEEK_HOLE find written pages', async () => {
    const fd = memfdCreate('tsvmm-test');
    try {
      const size = 16 * 4096;
      ftruncate(fd, size);
      expect(lseek(fd, 0, SEEK_DATA)).toBe(-1); // all hole
      pwrite(fd, new Uint8Array([1]), 5 * 4096 + 7);
      pwrite(fd, new Uint8Array([2]), 9 * 4096);
      expect(lseek(fd, 0, SEEK_DATA)).toBe(5 * 4096);
      expect(lseek(fd, 5 * 4096, SEEK_HOLE)).toBe(6 * 4096);
      expect(lseek(fd, 6 * 4096, SEEK_DATA)).toBe(9 * 4096);
      await fallocateAsync(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 5 * 4096, 4096);
      expect(lseek(fd, 0, SEEK_DATA)).toBe(9 * 4096);
    } finally { close(fd); }
  });

  it('readAsync reports the errno of the failed pool-thread read', async () => {
    await expect(readAsync(-1, new Uint8Array(8))).rejects.toMatchObject({ code: 'ESYS', syscall: 'read', errno: errnoValue('EBADF') });
  });

  it('OFD locks conflict between two opens of one file in one process', () => {
    const path = join(dir, 'lock');
    writeFileSync(path, 'x');
    const a = open(path, O_RDWR), b = open(path, O_RDWR);
    try {
      expect(ofdSetLock(a, F_WRLCK)).toBe(true);
      expect(ofdSetLock(b, F_RDLCK)).toBe(false);
      const held = ofdGetLock(b, F_WRLCK);
      expect(held?.type).toBe(F_WRLCK);
      expect(held?.pid).toBe(-1); // OFD locks report pid -1
      expect(ofdSetLock(a, F_UNLCK)).toBe(true);
      expect(ofdGetLock(b, F_WRLCK)).toBeNull();
      expect(ofdSetLock(b, F_RDLCK)).toBe(true);
    } finally { close(a); close(b); }
  });
});

describe('memory', () => {
  it('mmap + viewAt + madvise + munmap', () => {
    const len = 8 * 4096;
    const p = mmap(len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    expect(p % 4096n).toBe(0n);
    const v = new Uint8Array(viewAt(p, len));
    v[100] = 42;
    expect(new Uint8Array(viewAt(p + 100n, 1))[0]).toBe(42);
    madvise(p, len, MADV_DONTNEED); // private anonymous: pages read back as zero
    expect(v[100]).toBe(0);
    munmap(p, len);
  });

  it('mmap failure throws SysError naming the mapping', () => {
    expect(() => mmap(4096, PROT_READ, MAP_SHARED, -1, 0, 'bogus')).toThrow(/mmap \(bogus\) failed: EBADF/);
  });

  it('viewAt refuses lengths above the runtime limit before reaching koffi (which would abort)', () => {
    expect(MAX_VIEW_BYTES).toBeGreaterThanOrEqual(2 ** 32);
    expect(() => viewAt(0x1000n, MAX_VIEW_BYTES + 4096)).toThrow(RangeError);
    expect(() => viewAt(0n, 16)).toThrow(RangeError);
    expect(() => viewAt(0x1000n, 0)).toThrow(RangeError);
  });

  it('views a 4 GiB MAP_NORESERVE mapping (the largest one view can be)', () => {
    const len = 2 ** 32;
    const p = mmap(len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | 0x4000);
    try {
      const v = new Uint8Array(viewAt(p, len));
      v[len - 1] = 9;
      expect(v.length).toBe(len);
      expect(v[len - 1]).toBe(9);
    } finally { munmap(p, len); }
  });

  it('an address mapped here is viewable from a worker thread', async () => {
    const p = mmap(4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    new Uint8Array(viewAt(p, 4096))[10] = 77;
    const koffiPath = createRequire(import.meta.url).resolve('koffi');
    const w = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       const koffi = require(workerData.koffiPath);
       const v = new Uint8Array(koffi.view(workerData.address, 4096));
       const seen = v[10]; v[11] = 88;
       parentPort.postMessage(seen);`,
      { eval: true, workerData: { address: p, koffiPath } },
    );
    const seen = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
    expect(seen).toBe(77);
    expect(new Uint8Array(viewAt(p, 4096))[11]).toBe(88);
    await w.terminate();
    munmap(p, 4096);
  });
});

describe('threads', () => {
  it('pthreadSelf/gettid/getpid give this thread and process', () => {
    expect(pthreadSelf()).toBeGreaterThan(0n);
    expect(getpid()).toBe(process.pid);
    expect(gettid()).toBe(process.pid); // the main thread's tid is the pid
  });

  it('pthreadKill with signal 0 probes a live thread; a bad signal is an error', () => {
    expect(() => pthreadKill(pthreadSelf(), 0)).not.toThrow();
    expect(() => pthreadKill(pthreadSelf(), 999)).toThrow(/pthread_kill failed: EINVAL/);
  });
});
