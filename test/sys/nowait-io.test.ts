import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { readNow, writeNow, UNSUPPORTED, WOULD_BLOCK } from '../../src/sys/nowait-io.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-nowait-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('RWF_NOWAIT I/O', () => {
  test('a cached read completes at once with the file content; past the end it reads 0 bytes', () => {
    const path = join(dir, 'a');
    writeFileSync(path, Buffer.from('0123456789'));
    const fd = openSync(path, 'r');
    try {
      const into = new Uint8Array(4);
      expect(readNow(fd, into, 3)).toBe(4);
      expect(Buffer.from(into).toString()).toBe('3456');
      expect(readNow(fd, into, 100)).toBe(0);
    } finally { closeSync(fd); }
  });

  test('a write either lands in the file or says it must wait / cannot, never half-done silently', () => {
    const path = join(dir, 'b');
    writeFileSync(path, Buffer.alloc(16));
    const fd = openSync(path, 'r+');
    try {
      const n = writeNow(fd, Buffer.from('abcd'), 4);
      expect([4, WOULD_BLOCK, UNSUPPORTED]).toContain(n);
      if (n === 4) expect(readFileSync(path).subarray(4, 8).toString()).toBe('abcd');
    } finally { closeSync(fd); }
  });
});
