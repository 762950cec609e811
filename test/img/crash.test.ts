import { spawn } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { prng, qemuCheck, qemuContent, qemuImg, qemuIo, tempDir } from '../block/qcow2/helpers.js';

/**
 * Crash safety: a writer SIGKILLed at a random moment must leave an image qemu-img check finds
 * without corruption (leaked clusters are allowed). The writers run from dist/ (npm run build).
 */
const root = resolve(import.meta.dirname, '../..');
const cli = join(root, 'dist/cli/tsvmm-img.js');
const openJs = join(root, 'dist/block/open.js');
const tmp = tempDir();
afterAll(() => tmp.cleanup());

function distIsFresh(): void {
  const src = join(root, 'src/block/qcow2/image.ts');
  if (!existsSync(cli) || !existsSync(openJs) || statSync(openJs).mtimeMs < statSync(src).mtimeMs) {
    throw new Error('dist/ is missing or older than src/: run "npm run build" before this test');
  }
}

/** Runs `node args`, SIGKILLs it after `ms` (if still running); resolves when it is gone. */
function runAndKill(args: string[], ms: number): Promise<'killed' | 'finished'> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL') done('killed');
      else if (code === 0) done('finished');
      else fail(new Error(`writer failed (${code}): ${stderr}`));
    });
  });
}

// Writes 512-byte blocks tagged with their own guest offset, forever, to a 512 B-cluster image.
const WRITER = `
import { openImage } from ${JSON.stringify(openJs)};
const img = await openImage(process.argv[1], { readOnly: false });
let seed = Number(process.argv[2]);
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296);
for (;;) {
  const block = Math.floor(rand() * (img.size / 512));
  const n = 1 + Math.floor(rand() * 8);
  const data = Buffer.alloc(Math.min(n, img.size / 512 - block) * 512);
  for (let i = 0; i < data.length; i += 512) { data.fill(1 + ((block + i / 512) % 250), i, i + 512); data.writeUInt32LE(block * 512 + i, i); }
  await img.write(block * 512, data);
}
`;

/**
 * Like runAndKill, and collects the writer's stdout: the number of writes covered by its last
 * completed flush (stdout to a pipe is synchronous on Linux, so a printed line was sent).
 */
function runKillAndRead(args: string[], ms: number): Promise<{ outcome: 'killed' | 'finished'; flushed: number }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const lines = stdout.split('\n').filter((l) => l.startsWith('flushed '));
      const flushed = lines.length === 0 ? 0 : Number(lines[lines.length - 1]!.slice(8));
      if (signal === 'SIGKILL') done({ outcome: 'killed', flushed });
      else if (code === 0) done({ outcome: 'finished', flushed });
      else fail(new Error(`writer failed (${code}): ${stderr}`));
    });
  });
}

// Writes each 512-byte block of the disk once, in a scattered order, tagged with its offset;
// flushes every 40 writes and reports how many writes the flush covered.
const FLUSHING_WRITER = `
import { openImage } from ${JSON.stringify(openJs)};
const img = await openImage(process.argv[1], { readOnly: false });
const blocks = img.size / 512;
for (let i = 0; i < blocks; i++) {
  const block = (i * 40503) % blocks;
  const data = Buffer.alloc(512, 1 + (block % 200));
  data.writeUInt32LE(block * 512, 0);
  await img.write(block * 512, data);
  if ((i + 1) % 40 === 0) {
    await img.flush();
    process.stdout.write('flushed ' + (i + 1) + '\\n');
  }
}
await img.close();
`;

/** Backing file block `b`: 0xee with its index at byte 4 (never equal to a written block). */
function backingBlock(b: number): Buffer {
  const block = Buffer.alloc(512, 0xee);
  block.writeUInt32LE(b, 4);
  return block;
}

describe('a writer killed at a random moment leaves no corruption', () => {
  it('random allocating writes (refcount table growth included)', async () => {
    distIsFresh();
    const rand = prng(42);
    let killed = 0;
    for (let round = 0; round < 4; round++) {
      const file = join(tmp.dir, `alloc-${round}.qcow2`);
      qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=512,refcount_bits=64', file, '16M');
      if ((await runAndKill(['--input-type=module', '-e', WRITER, file, String(round + 1)], 300 + rand() * 900)) === 'killed') killed++;
      const check = qemuCheck(file);
      expect(check.corruptions, `round ${round}`).toBe(0);
      expect(check.checkErrors).toBe(0);
      // Every block reads as zeros or as exactly what was written there: no L2 entry got ahead of its data.
      const content = qemuContent(file, tmp.dir);
      for (let at = 0; at < content.byteLength; at += 512) {
        const block = content.subarray(at, at + 512);
        if (block.every((b) => b === 0)) continue;
        expect(block.readUInt32LE(0), `block at ${at}`).toBe(at);
        expect(block[511]).toBe(1 + ((at / 512) % 250));
      }
    }
    expect(killed).toBe(4); // the writer never ends on its own
  });

  it('allocating writes with periodic flushes: every flushed write survives the kill', async () => {
    distIsFresh();
    const rand = prng(1234);
    const layouts = [
      { cluster: 4096, backing: true },
      { cluster: 65536, backing: true },
      { cluster: 512, backing: false },
      { cluster: 65536, backing: true },
    ];
    let flushedTotal = 0;
    for (const [round, layout] of layouts.entries()) {
      const file = join(tmp.dir, `flush-${round}.qcow2`);
      const size = 8 << 20;
      const blocks = size / 512;
      const backing = Buffer.alloc(size);
      if (layout.backing) {
        for (let b = 0; b < blocks; b++) backingBlock(b).copy(backing, b * 512);
        const base = join(tmp.dir, `flush-${round}-base.raw`);
        writeFileSync(base, backing);
        qemuImg('create', '-f', 'qcow2', '-o', `cluster_size=${layout.cluster}`, '-b', base, '-F', 'raw', file);
      } else qemuImg('create', '-f', 'qcow2', '-o', `cluster_size=${layout.cluster}`, file, String(size));
      const { flushed } = await runKillAndRead(['--input-type=module', '-e', FLUSHING_WRITER, file], 400 + rand() * 1000);
      flushedTotal += flushed;
      const check = qemuCheck(file);
      expect(check.corruptions, `round ${round}`).toBe(0);
      expect(check.checkErrors).toBe(0);
      const content = qemuContent(file, tmp.dir);
      const order = new Map<number, number>(); // block -> index of the write that wrote it
      for (let i = 0; i < blocks; i++) order.set((i * 40503) % blocks, i);
      for (let b = 0; b < blocks; b++) {
        const got = content.subarray(b * 512, (b + 1) * 512);
        const written = Buffer.alloc(512, 1 + (b % 200));
        written.writeUInt32LE(b * 512, 0);
        if (got.equals(written)) continue;
        // Not written, or written after the last completed flush: the backing data, untouched
        // (copy-on-write of a partial cluster kept the rest of the cluster's backing content).
        expect(order.get(b)! >= flushed, `round ${round}: block ${b} (write ${order.get(b)}) lost after flush ${flushed}`).toBe(true);
        expect(got.equals(backing.subarray(b * 512, (b + 1) * 512)), `round ${round}: block ${b} is neither written nor backing`).toBe(true);
      }
    }
    expect(flushedTotal).toBeGreaterThan(0); // the writers got far enough to flush
  });

  it('tsvmm-img commit killed mid-way', async () => {
    distIsFresh();
    const rand = prng(7);
    let killed = 0;
    for (let round = 0; round < 6; round++) {
      const base = join(tmp.dir, `c-base-${round}.qcow2`);
      const top = join(tmp.dir, `c-top-${round}.qcow2`);
      qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=512', base, '24M');
      qemuImg('create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);
      qemuIo(top, 'write -P 0x11 0 6M', 'write -P 0x22 8M 6M', 'write -z 16M 1M', 'write -P 0x33 20M 3M');
      const expected = qemuContent(top, tmp.dir);
      const outcome = await runAndKill([cli, 'commit', top], 150 + rand() * 900);
      if (outcome === 'killed') killed++;
      for (const f of [base, top]) expect(qemuCheck(f).corruptions, `${outcome} round ${round} ${f}`).toBe(0);
      // Whatever happened, the top still shows the same disk.
      expect(qemuContent(top, tmp.dir).equals(expected)).toBe(true);
    }
    expect(killed).toBeGreaterThan(1);
  });
});
