/**
 * block-commit and block-pull on a Disk (no KVM: writes go through the disk's current backend as
 * the device's do) while writes keep arriving; the result is checked against a byte model and
 * qemu-img check.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDisks, type Disk } from '../../../src/vmm/disks.js';
import type { Vm } from '../../../src/vmm/vm.js';
import { BlockJobManager } from '../../../src/vmm/jobs/manager.js';
import { readBackingOf } from '../../../src/block/chain/drop.js';
import { createOverlay } from '../../../src/block/chain/overlay.js';
import { pattern, prng, qemuCheck, qemuContent, qemuImg, tempDir } from '../../block/qcow2/helpers.js';

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;
let t: ReturnType<typeof tempDir>;
let disk: Disk | undefined;
let current: BlockJobManager | undefined;

beforeEach(() => { t = tempDir(); });
afterEach(async () => {
  await current?.cancelAll();
  current = undefined;
  await disk?.close();
  disk = undefined;
  t.cleanup();
});

interface Setup { manager: BlockJobManager; events: string[]; base: string; mid: string; top: string; model: Buffer }

/** base.qcow2 ← mid.qcow2 ← top.qcow2 (active, opened as the VM's disk), each with its own data. */
async function setup(): Promise<Setup> {
  const base = join(t.dir, 'base.qcow2');
  const mid = join(t.dir, 'mid.qcow2');
  const top = join(t.dir, 'top.qcow2');
  writeFileSync(join(t.dir, 'seed.raw'), pattern(SIZE, 1));
  qemuImg('convert', '-O', 'qcow2', join(t.dir, 'seed.raw'), base);
  await createOverlay(mid, base, 'qcow2', SIZE);
  qemuImg('rebase', '-u', '-b', 'base.qcow2', '-F', 'qcow2', mid);
  for (const [file, cmd] of [[mid, 'write -P 0x44 1M 3M'], [top, 'write -P 0x55 3M 1M']] as const) {
    if (file === top) await createOverlay(top, mid, 'qcow2', SIZE);
    const r = spawnSync('qemu-io', ['-f', 'qcow2', '-c', cmd, file], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(r.stderr);
  }
  const model = qemuContent(top, t.dir);
  [disk] = await openDisks([{ path: top, readonly: false, id: 'disk0', backing_files: true }]);
  const vm = { state: 'Running', platform: { disks: [disk] } } as unknown as Vm;
  const events: string[] = [];
  const manager = new BlockJobManager({ vm: () => vm, emit: (e) => events.push(e) });
  current = manager;
  return { manager, events, base, mid, top, model };
}

/** Writes random 16 KiB blocks through the disk's current backend until `stop()` says so or `max` were written. */
async function writeWhile(model: Buffer, stop: () => boolean, seed: number, max = 400): Promise<number> {
  const rnd = prng(seed);
  let n = 0;
  while (!stop() && n < max) {
    const off = Math.floor(rnd() * (SIZE / 16384)) * 16384;
    const data = pattern(16384, 50 + (n % 150));
    await disk!.backend.write(off, data);
    data.copy(model, off);
    n++;
    await new Promise((r) => setTimeout(r, 2));
  }
  return n;
}

async function liveContent(): Promise<Buffer> {
  const b = Buffer.alloc(SIZE);
  await disk!.backend.read(0, b);
  return b;
}

describe('block-pull', () => {
  it('copies the whole chain up while writes continue, then drops the backing file', async () => {
    const s = await setup();
    const job = await s.manager.startPull({ disk: 'disk0', rate_limit: 8 * MiB });
    const writes = await writeWhile(s.model, () => s.manager.list()[0]!.state !== 'running', 3, 60);
    expect(writes).toBeGreaterThan(10);
    while (s.manager.list()[0]!.finished === undefined) await new Promise((r) => setTimeout(r, 20));
    const info = s.manager.list()[0]!;
    expect(info.id).toBe(job.id);
    expect(info.state).toBe('completed');
    expect(info.done).toBe(SIZE);
    expect(s.events).toEqual(['block-job-started', 'block-job-completed']);
    expect((await liveContent()).equals(s.model)).toBe(true);
    expect(await readBackingOf(s.top)).toBeNull();
    await disk!.close();
    disk = undefined;
    expect(qemuCheck(s.top).status).toBe(0);
    expect(qemuContent(s.top, t.dir).equals(s.model)).toBe(true);
  });

  it('pulls down to a given base only', async () => {
    const s = await setup();
    await s.manager.startPull({ disk: 'disk0', base: s.base });
    while (s.manager.list()[0]!.finished === undefined) await new Promise((r) => setTimeout(r, 20));
    expect(s.manager.list()[0]!.state).toBe('completed');
    expect(await readBackingOf(s.top)).toBe(s.base);
    expect((await liveContent()).equals(s.model)).toBe(true);
  });

  it('copies a cluster whose backing raw file has a hole before its data (status finer than a cluster)', async () => {
    // A sparse raw base: in every other 64 KiB cluster the first 32 KiB are a hole and the
    // second 32 KiB data, the way a guest file system leaves its raw disk.
    const base = join(t.dir, 'sparse.raw');
    const model = Buffer.alloc(SIZE);
    for (let at = 0; at < SIZE; at += 128 * 1024) pattern(32 * 1024, 7 + (at / 131072) % 100).copy(model, at + 32 * 1024);
    const fd = openSync(base, 'w');
    ftruncateSync(fd, SIZE);
    for (let at = 0; at < SIZE; at += 128 * 1024) writeSync(fd, model, at + 32 * 1024, 32 * 1024, at + 32 * 1024);
    closeSync(fd);
    const top = join(t.dir, 'over-sparse.qcow2');
    await createOverlay(top, base, 'raw', SIZE);
    [disk] = await openDisks([{ path: top, readonly: false, id: 'disk0', backing_files: true }]);
    const vm = { state: 'Running', platform: { disks: [disk] } } as unknown as Vm;
    const manager = new BlockJobManager({ vm: () => vm, emit: () => {} });
    current = manager;
    await manager.startPull({ disk: 'disk0' });
    while (manager.list()[0]!.finished === undefined) await new Promise((r) => setTimeout(r, 20));
    expect(manager.list()[0]!.state).toBe('completed');
    expect(await readBackingOf(top)).toBeNull();
    expect((await liveContent()).equals(model), 'the pulled image lost data next to a hole').toBe(true);
    await disk!.close();
    disk = undefined;
    expect(qemuCheck(top).status).toBe(0);
    expect(qemuContent(top, t.dir).equals(model)).toBe(true);
  });
});

describe('block-commit', () => {
  it('active commit: merges top and mid into base while writes continue, then pivots onto base', async () => {
    const s = await setup();
    await s.manager.startCommit({ disk: 'disk0', base: s.base, rate_limit: 2 * MiB });
    const writes = await writeWhile(s.model, () => s.manager.list()[0]!.state !== 'running', 4, 30);
    expect(writes).toBeGreaterThan(10);
    // The writer stopped while the copy still ran (the pivot holds the device's I/O, which this
    // test's direct writes would bypass).
    expect(s.manager.list()[0]!.state).toBe('running');
    while (s.manager.list()[0]!.finished === undefined) await new Promise((r) => setTimeout(r, 20));
    const info = s.manager.list()[0]!;
    expect(info.state).toBe('completed');
    expect(info.pivot_pause_ms).toBeGreaterThanOrEqual(0);
    expect(disk!.path).toBe(s.base);
    expect((await liveContent()).equals(s.model)).toBe(true);
    await disk!.close();
    disk = undefined;
    expect(qemuCheck(s.base).status).toBe(0);
    expect(qemuContent(s.base, t.dir).equals(s.model)).toBe(true);
  });

  it('intermediate commit: merges mid into base and rebases the active top onto base', async () => {
    const s = await setup();
    await s.manager.startCommit({ disk: 'disk0', top: s.mid, base: s.base });
    const writes = await writeWhile(s.model, () => s.manager.list()[0]!.finished !== undefined, 5);
    while (s.manager.list()[0]!.finished === undefined) await new Promise((r) => setTimeout(r, 20));
    expect(writes).toBeGreaterThan(0);
    expect(s.manager.list()[0]!.state).toBe('completed');
    expect(await readBackingOf(s.top)).toBe(s.base);
    expect((await liveContent()).equals(s.model)).toBe(true);
    await disk!.close();
    disk = undefined;
    expect(qemuCheck(s.base).status).toBe(0);
    expect(qemuCheck(s.top).status).toBe(0);
    expect(qemuContent(s.top, t.dir).equals(s.model)).toBe(true);
  });

  it('cancel: the guest stays on its chain, content unchanged', async () => {
    const s = await setup();
    const job = await s.manager.startCommit({ disk: 'disk0', base: s.base, rate_limit: 1 * MiB });
    await new Promise((r) => setTimeout(r, 300));
    await s.manager.cancel(job.id);
    expect(s.manager.list()[0]!.state).toBe('cancelled');
    expect(s.events).toContain('block-job-cancelled');
    expect(disk!.path).toBe(s.top);
    await writeWhile(s.model, () => false, 6);
    expect((await liveContent()).equals(s.model)).toBe(true);
  });

  it('refuses a base outside the chain and a second job on the same disk', async () => {
    const s = await setup();
    await expect(s.manager.startCommit({ disk: 'disk0', base: join(t.dir, 'seed.raw') })).rejects.toThrow(/not in the disk's chain/);
    await s.manager.startPull({ disk: 'disk0', rate_limit: 1 * MiB });
    await expect(s.manager.startCommit({ disk: 'disk0' })).rejects.toThrow(/already has a block job/);
    expect(() => s.manager.refuseWhileRunning('snapshot')).toThrow(/cannot snapshot while block job/);
    await s.manager.cancelAll();
    expect(s.manager.list()[0]!.state).toBe('cancelled');
  });
});
