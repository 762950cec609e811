/**
 * Disk snapshots on a running VM, with the tiny kernel's virtio-blk workload (guest-images/README.md)
 * doing I/O while the snapshots, reverts and merges happen. The tiny kernel runs a fixed list of
 * blk operations and then ticks, so "I/O throughout" means: each operation under test is issued
 * while a long guest operation (seqwrite/seqread of tens of MiB: long enough nested, and each test checks that its operation did land mid-I/O) is in flight, and several
 * phases (processes) cover what one run cannot. qemu-img is the oracle for image checks and
 * content. TSVMM_DIST runs a private build instead of dist/.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { waitForApi } from '../support/snapshot-vm.js';
import { crcHex, expectedPattern, noise } from '../support/blk-disk.js';
import { repoRoot, tinyElf } from '../support/tsvmm-process.js';
import { deadline } from '../support/timing.js';

const MiB = 1024 * 1024;
const dist = resolve(process.env.TSVMM_DIST ?? join(repoRoot, 'dist'));
const tsvmmJs = join(dist, 'cli', 'tsvmm.js');
const remoteJs = join(dist, 'cli', 'tsvmm-remote.js');

/** `tsvmm-remote --api-socket SOCK ARGS`, which must succeed; returns its stdout. */
function remote(sock: string, ...args: string[]): string {
  const r = spawnSync(process.execPath, [remoteJs, '--api-socket', sock, ...args], { encoding: 'utf8', timeout: deadline(120_000) });
  if (r.status !== 0) throw new Error(`tsvmm-remote ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/**
 * One request on a fresh connection. (Node's default agent keeps connections alive; this test
 * blocks its event loop in qemu-img runs for longer than the server's keep-alive timeout, and a
 * reused connection the server has closed meanwhile fails with EPIPE.)
 */
function api(sock: string, method: 'GET' | 'PUT', route: string, body?: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolvePromise, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request({
      socketPath: sock, method, path: `/api/v1/${route}`, agent: false, timeout: deadline(120_000),
      headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => { text += d; }).on('end', () => resolvePromise({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${route} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** A tsvmm process with its console (stdout) collected. */
class Vmm {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<void>;

  constructor(args: string[], readonly sock: string) {
    this.child = spawn(process.execPath, [tsvmmJs, ...args, '--api-socket', sock], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => { this.stdout += d; });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => { this.stderr += d; });
    this.exited = new Promise((r) => this.child.on('exit', () => r()));
  }

  async waitFor(re: RegExp, from = 0, timeoutMs = deadline(60_000)): Promise<RegExpMatchArray> {
    const giveUpAt = Date.now() + timeoutMs;
    for (;;) {
      const m = this.stdout.slice(from).match(re);
      if (m !== null) return m;
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`tsvmm exited before ${re}:\n${this.stdout.slice(-1500)}\n${this.stderr.slice(-1500)}`);
      if (Date.now() > giveUpAt) throw new Error(`timed out waiting for ${re}:\n${this.stdout.slice(-1500)}\n${this.stderr.slice(-1500)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async put(route: string, body?: unknown): Promise<void> {
    const r = await api(this.sock, 'PUT', route, body);
    if (r.status !== 204) throw new Error(`PUT ${route}: HTTP ${r.status} ${r.body}\ntsvmm stderr:\n${this.stderr.slice(-3000)}`);
  }

  async get<T>(route: string): Promise<T> {
    const r = await api(this.sock, 'GET', route);
    if (r.status !== 200) throw new Error(`GET ${route}: HTTP ${r.status} ${r.body}`);
    return JSON.parse(r.body) as T;
  }

  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}

let root: string;
/** The running test's own directory (a fresh one per attempt, so a retried test starts clean). */
let work: string;
const live: Vmm[] = [];

async function boot(name: string, disk: string, cmdline: string, memory = '128M'): Promise<Vmm> {
  const sock = join(work, `${name}.sock`);
  // backing_files=on: some tests boot on chains they made with qemu-img, or that a killed VMM left.
  const vm = new Vmm(['--kernel', tinyElf, '--serial', 'tty', '--memory', `size=${memory}`, '--disk', `path=${disk},backing_files=on`, '--cmdline', cmdline], sock);
  live.push(vm);
  await waitForApi(sock);
  // The API is served before the VM is created: wait until it exists.
  for (let i = 0; (await api(sock, 'GET', 'vm.info')).status !== 200; i++) {
    if (i > 500) throw new Error(`VM ${name} was not created:\n${vm.stderr}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return vm;
}

async function emptyVmm(name: string): Promise<Vmm> {
  const sock = join(work, `${name}.sock`);
  const vm = new Vmm([], sock);
  live.push(vm);
  await waitForApi(sock);
  return vm;
}

/** A raw disk of `size` bytes whose first `filled` bytes are noise(seed). */
function rawDisk(path: string, size: number, filled: number, seed: number): Buffer {
  const data = noise(filled, seed);
  const fd = openSync(path, 'w');
  writeSync(fd, data);
  ftruncateSync(fd, size);
  closeSync(fd);
  return data;
}

function qemuImg(...args: string[]): { status: number; out: string; stdout: string } {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  return { status: r.status ?? -1, out: r.stdout + r.stderr, stdout: r.stdout };
}

/** Guest-visible content of an image chain, as qemu-img reads it. */
function content(image: string): Buffer {
  const out = join(work, `content-${Math.random().toString(36).slice(2)}.raw`);
  const r = qemuImg('convert', '-O', 'raw', image, out);
  if (r.status !== 0) throw new Error(r.out);
  const b = readFileSync(out);
  rmSync(out);
  return b;
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** A raw image of the expected content, for `qemu-img compare`. */
function expectedImage(name: string, size: number, parts: Array<[number, Buffer]>): string {
  const p = join(work, name);
  const fd = openSync(p, 'w');
  ftruncateSync(fd, size);
  for (const [at, b] of parts) writeSync(fd, b, 0, b.length, at);
  closeSync(fd);
  return p;
}

function checkClean(image: string): void {
  const r = qemuImg('check', image);
  expect(r.status, `qemu-img check ${image}:\n${r.out}`).toBe(0);
}

/** `qemu-img compare`; `shared` reads images a running VM holds locked (-U). */
function compareEqual(a: string, b: string, shared = false): void {
  const r = qemuImg('compare', ...(shared ? ['-U'] : []), a, b);
  expect(r.status, `qemu-img compare ${a} ${b}:\n${r.out}`).toBe(0);
}

async function waitJob(vm: Vmm, timeoutMs = deadline(120_000)): Promise<Record<string, unknown>> {
  const giveUpAt = Date.now() + timeoutMs;
  for (;;) {
    const jobs = await vm.get<Array<Record<string, unknown>>>('vm.jobs');
    const j = jobs.at(-1)!;
    if (j['finished'] !== undefined) return j;
    if (Date.now() > giveUpAt) throw new Error(`job did not finish: ${JSON.stringify(j)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(() => { root = mkdtempSync(join(tmpdir(), 'tsvmm-disksnap-it-')); });
beforeEach(() => { work = mkdtempSync(join(root, 'case-')); });
afterAll(async () => {
  await Promise.all(live.map((v) => v.kill()));
  rmSync(root, { recursive: true, force: true });
});

describe('disk snapshots on a running VM', () => {
  it('live external snapshot while the guest streams writes: nothing lost, base frozen, I/O held briefly', async () => {
    const disk = join(work, 'live.raw');
    rawDisk(disk, 128 * MiB, 0, 1);
    const vm = await boot('live', disk, 'tiny.blk=seqwrite:112,read:48,flush tiny.ticks');
    await vm.waitFor(/^blk: dev0 /m);
    await vm.put('vm.snapshot-disk', { disk: '_disk0', file: join(work, 'live.s1.qcow2') });
    const op = await vm.get<{ result: { io_pause_ms: number; overlay: string; frozen: string } }>('vm.disk-operation');
    expect(op.result.frozen).toBe(disk);
    // How long I/O was held is a number to report (bench/disk-snapshot-bench.mjs), not to assert here.
    expect(op.result.io_pause_ms).toBeGreaterThanOrEqual(0);
    // The snapshot landed during the guest's writes (else this test proves nothing).
    expect(vm.stdout).not.toMatch(/blk: seqwrite/);
    const m = await vm.waitFor(/^blk: read 48 MiB crc=([0-9a-f]{8})$/m);
    expect(m[1]).toBe(crcHex(expectedPattern(48 * MiB)));
    // Only what the guest flushed must survive the kill below (the overlay's metadata is cached).
    await vm.waitFor(/^blk: flush ok$/m);
    const info = await vm.get<{ config: { disks: Array<{ path: string }> } }>('vm.info');
    expect(info.config.disks[0]!.path).toBe(join(work, 'live.s1.qcow2'));
    // The frozen raw image can no longer be written by anyone else.
    const w = spawnSync('qemu-io', ['-f', 'raw', '-c', 'write 0 512', disk], { encoding: 'utf8' });
    expect(w.status).not.toBe(0);
    await vm.kill();
    checkClean(join(work, 'live.s1.qcow2'));
    const pat = expectedPattern(112 * MiB);
    compareEqual(join(work, 'live.s1.qcow2'), expectedImage('live.expected.raw', 128 * MiB, [[0, pat]]));
    // The frozen image holds what the guest wrote before the switch: pattern or zeros (requests
    // run 32 at a time, so not a strict prefix), and never all of it.
    const frozen = readFileSync(disk);
    let patterned = 0;
    for (let at = 0; at < 112 * MiB; at += 65536) {
      const block = frozen.subarray(at, at + 65536);
      if (block.equals(pat.subarray(at, at + 65536))) patterned++;
      else expect(block.every((b) => b === 0), `frozen block at ${at} is neither the pattern nor zeros`).toBe(true);
    }
    expect(patterned).toBeLessThan((112 * MiB) / 65536);
  }, deadline(120_000));

  it('named system snapshot, more guest writes, revert: the guest reads exactly the old data again', async () => {
    const disk = join(work, 'rev.raw');
    const old = rawDisk(disk, 256 * MiB, 16 * MiB, 2);
    const vm = await boot('rev', disk, 'tiny.blk=read:16,seqread:240,read:16,write:16,read:16 tiny.ticks tiny.tick_ms=50');
    await vm.waitFor(/^blk: read 16 MiB crc=/m);
    await vm.put('vm.snapshot-create', { name: 'S1', description: 'before the writes' });
    const atSnapshot = vm.stdout;
    expect(atSnapshot.match(/^blk: read 16 MiB/gm), 'the snapshot must land during the seqread').toHaveLength(1);
    const created = await vm.get<{ result: { paused_ms: number } }>('vm.disk-operation');
    expect(created.result.paused_ms).toBeGreaterThan(0);
    await vm.waitFor(/^blk: read 16 MiB crc=([0-9a-f]{8})\n(?:.*\n)*tick 2\n/m);
    expect(vm.stdout).toContain(`blk: read 16 MiB crc=${crcHex(expectedPattern(16 * MiB))}`);
    const list = await vm.get<{ snapshots: Array<{ name: string; kind: string; current: boolean; parent: string | null; size_bytes: number }> }>('vm.snapshot-list');
    expect(list.snapshots).toEqual([expect.objectContaining({ name: 'S1', kind: 'system', current: true, parent: null })]);
    expect(list.snapshots[0]!.size_bytes).toBeGreaterThan(0);
    const before = vm.stdout.length;
    await vm.put('vm.snapshot-revert', { name: 'S1' });
    const info = await vm.get<{ state: string }>('vm.info');
    expect(info.state).toBe('Running');
    // The reverted guest is inside its seqread again; its next read sees the disk as it was.
    const again = await vm.waitFor(/^blk: read 16 MiB crc=([0-9a-f]{8})$/m, before);
    expect(again[1]).toBe(crcHex(old));
    await vm.waitFor(/^blk: write 16 MiB ok/m, before);
    expect(vm.stdout.slice(before)).not.toMatch(/tiny: boot|FAILED/);
    await vm.kill();
  }, deadline(120_000));

  it('a checkpoint with disks restores twice as consistent, independent clones', async () => {
    const disk = join(work, 'ck.raw');
    const old = rawDisk(disk, 256 * MiB, 16 * MiB, 3);
    const vm = await boot('ck', disk, 'tiny.blk=read:16,seqread:240,write:16,read:16,flush tiny.ticks tiny.tick_ms=50');
    await vm.waitFor(/^blk: read 16 MiB crc=/m);
    await vm.put('vm.pause');
    await vm.put('vm.snapshot', { destination_url: `file://${join(work, 'ck.snap')}`, disks: true });
    await vm.put('vm.resume');
    const frozenSha = sha(readFileSync(disk));
    // The original keeps going on its own overlay.
    await vm.waitFor(/^blk: write 16 MiB ok/m);
    const clones: Vmm[] = [];
    for (const n of [1, 2]) {
      const c = await emptyVmm(`clone${n}`);
      await c.put('vm.restore', { source_url: `file://${join(work, 'ck.snap')}`, disk_paths: { _disk0: join(work, `clone${n}.qcow2`) } });
      clones.push(c);
    }
    await clones[0]!.put('vm.resume');
    const m = await clones[0]!.waitFor(/^blk: read 16 MiB crc=([0-9a-f]{8})$/m);
    expect(m[1]).toBe(crcHex(expectedPattern(16 * MiB)));
    // Clone 2 is still paused: clone 1's writes are not in its overlay.
    compareEqual(join(work, 'clone2.qcow2'), disk, true);
    await clones[1]!.put('vm.resume');
    await clones[1]!.waitFor(/^blk: read 16 MiB crc=/m);
    for (const c of clones) await c.waitFor(/^blk: flush ok$/m);
    for (const c of clones) expect(c.stdout).not.toMatch(/tiny: boot|FAILED/);
    await Promise.all([vm.kill(), ...clones.map((c) => c.kill())]);
    expect(sha(readFileSync(disk))).toBe(frozenSha);
    const expected = expectedImage('ck.expected.raw', 256 * MiB, [[0, expectedPattern(16 * MiB)]]);
    for (const n of [1, 2]) {
      checkClean(join(work, `clone${n}.qcow2`));
      compareEqual(join(work, `clone${n}.qcow2`), expected);
    }
    expect(old.length).toBe(16 * MiB);
  }, deadline(180_000));

  it('block-commit and block-pull while the guest writes; qemu-img check and compare', async () => {
    for (const kind of ['commit', 'pull'] as const) {
      const base = join(work, `${kind}.base.qcow2`);
      const seedRaw = join(work, `${kind}.seed.raw`);
      const seed = rawDisk(seedRaw, 64 * MiB, 64 * MiB, 4);
      expect(qemuImg('convert', '-O', 'qcow2', seedRaw, base).status).toBe(0);
      const vm = await boot(kind, base, 'tiny.blk=seqwrite:60,read:32,flush tiny.ticks');
      await vm.waitFor(/^blk: dev0 /m);
      await vm.put('vm.snapshot-disk', { disk: '_disk0', file: join(work, `${kind}.top.qcow2`) });
      await vm.put(`vm.block-${kind}`, { disk: '_disk0', rate_limit: 24 * MiB });
      expect(vm.stdout, 'the job must start while the guest still writes').not.toMatch(/blk: seqwrite/);
      const job = await waitJob(vm);
      expect(job['state'], JSON.stringify(job)).toBe('completed');
      const m = await vm.waitFor(/^blk: read 32 MiB crc=([0-9a-f]{8})$/m);
      expect(m[1]).toBe(crcHex(expectedPattern(32 * MiB)));
      await vm.waitFor(/^blk: flush ok$/m);
      const info = await vm.get<{ config: { disks: Array<{ path: string }> } }>('vm.info');
      const active = info.config.disks[0]!.path;
      expect(active).toBe(kind === 'commit' ? base : join(work, `${kind}.top.qcow2`));
      await vm.kill();
      const expected = expectedImage(`${kind}.expected.raw`, 64 * MiB, [[0, seed], [0, expectedPattern(60 * MiB)]]);
      checkClean(active);
      compareEqual(active, expected);
      if (kind === 'pull') expect(qemuImg('info', active).out).not.toMatch(/backing file:/);
    }
  }, deadline(240_000));

  it('deleting a middle snapshot merges its layer and leaves the others intact', async () => {
    const disk = join(work, 'del.raw');
    rawDisk(disk, 256 * MiB, 64 * MiB, 5);
    const vm = await boot('del', disk, 'tiny.blk=write:8,seqread:200,write:24,seqread:200,write:48 tiny.ticks tiny.tick_ms=50');
    await vm.waitFor(/^blk: write 8 MiB ok/m);
    await vm.put('vm.snapshot-create', { name: 'S1' });
    await vm.waitFor(/^blk: write 24 MiB ok/m);
    await vm.put('vm.snapshot-create', { name: 'S2' });
    await vm.waitFor(/^blk: write 48 MiB ok/m);
    await vm.put('vm.snapshot-create', { name: 'S3', disk_only: true });
    type Listing = { snapshot_dir: string; snapshots: Array<{ name: string; parent: string | null; disks: Array<{ path: string }> }> };
    const list = await vm.get<Listing>('vm.snapshot-list');
    const frozen = Object.fromEntries(list.snapshots.map((s) => [s.name, s.disks[0]!.path]));
    const before = Object.fromEntries(Object.entries(frozen).map(([n, p]) => [n, sha(content(p))]));

    expect(new Set(Object.values(before)).size).toBe(3);
    await vm.put('vm.snapshot-delete', { name: 'S2' });
    const after = await vm.get<Listing>('vm.snapshot-list');
    expect(after.snapshots.map((s) => s.name)).toEqual(['S1', 'S3']);
    expect(after.snapshots[1]!.parent).toBe('S1');
    // S2's frozen layer was merged up into S3's and removed; S1's and S3's disks are unchanged.
    expect(existsSync(frozen['S2']!)).toBe(false);
    expect(sha(content(frozen['S1']!))).toBe(before['S1']);
    expect(sha(content(frozen['S3']!))).toBe(before['S3']);
    checkClean(frozen['S3']!);
    // The running guest still reads through the shortened chain.
    const info = await vm.get<{ config: { disks: Array<{ path: string }> } }>('vm.info');
    expect(qemuImg('info', '--backing-chain', '-U', info.config.disks[0]!.path).out).not.toContain(frozen['S2']!);
    await vm.put('vm.snapshot-revert', { name: 'S1' });
    await vm.waitFor(/^blk: write 24 MiB ok/m, vm.stdout.lastIndexOf('blk: write 8 MiB ok') + 1);
    const reverted = await vm.get<{ config: { disks: Array<{ path: string }> } }>('vm.info');
    await vm.kill();
    // The catalogue survives the VMM: a new VMM on the same disk lists what remains.
    const again = await boot('del2', reverted.config.disks[0]!.path, 'tiny.ticks');
    await again.waitFor(/^tick 1$/m);
    const listed = await again.get<Listing & { current: string }>('vm.snapshot-list');
    expect(listed.snapshot_dir).toBe(list.snapshot_dir);
    expect(listed.snapshots.map((s) => s.name)).toEqual(['S1', 'S3']);
    expect(listed.current).toBe('S1');
    await again.kill();
  }, deadline(240_000));

  it('tsvmm-remote drives disk snapshots, checkpoints and block jobs', async () => {
    const disk = join(work, 'cli.raw');
    rawDisk(disk, 64 * MiB, 8 * MiB, 7);
    const vm = await boot('cli', disk, 'tiny.blk=write:4 tiny.ticks tiny.tick_ms=50');
    await vm.waitFor(/^tick 1$/m);
    expect(remote(vm.sock, 'snapshot-disk', '_disk0', join(work, 'cli.s1.qcow2'))).toMatch(/^disk _disk0 now on .*cli\.s1\.qcow2 \(frozen: .*cli\.raw\); guest I\/O held [0-9.]+ ms$/m);
    expect(remote(vm.sock, 'snapshot-create', 'A', '--description', 'first')).toMatch(/^snapshot A \(system\) created; guest paused [0-9.]+ ms$/m);
    expect(remote(vm.sock, 'snapshot-create', 'B', '--disk-only')).toMatch(/^snapshot B \(disk-only\) created/m);
    const table = remote(vm.sock, 'snapshot-list');
    expect(table).toMatch(/^ {3}A +\S+ \S+ +system +- /m);
    expect(table).toMatch(/^\* +B +\S+ \S+ +disk-only +A /m);
    const listed = JSON.parse(remote(vm.sock, '--json', 'snapshot-list')) as { snapshots: Array<{ name: string; description: string }> };
    expect(listed.snapshots.map((x) => [x.name, x.description])).toEqual([['A', 'first'], ['B', '']]);
    expect(remote(vm.sock, 'block-pull', '_disk0', '--base', disk, '--wait')).toMatch(/^job\d+ pull disk _disk0: completed 100\.0%/m);
    expect(remote(vm.sock, 'jobs')).toMatch(/completed/);
    const info = JSON.parse(remote(vm.sock, '--json', 'info')) as { block_jobs: Array<{ state: string }> };
    expect(info.block_jobs.at(-1)!.state).toBe('completed');
    expect(remote(vm.sock, 'snapshot-revert', 'A')).toMatch(/^reverted to A in \d+ ms; the VM is running$/m);
    expect(remote(vm.sock, 'snapshot-delete', 'B')).toMatch(/^snapshot B deleted$/m);
    remote(vm.sock, 'pause');
    remote(vm.sock, 'snapshot', join(work, 'cli.ck'), '--with-disks');
    expect(existsSync(join(work, 'cli.ck', 'disks.json'))).toBe(true);
    await vm.kill();
  }, deadline(120_000));

  it('killing the VMM in the middle of a block-commit leaves every image consistent; a new run completes it', async () => {
    const base = join(work, 'kill.base.qcow2');
    const seedRaw = join(work, 'kill.seed.raw');
    rawDisk(seedRaw, 128 * MiB, 32 * MiB, 6);
    expect(qemuImg('convert', '-O', 'qcow2', seedRaw, base).status).toBe(0);
    const top = join(work, 'kill.top.qcow2');
    expect(qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top).status).toBe(0);
    const cmds: string[] = [];
    for (let i = 0; i < 24; i++) cmds.push('-c', `write -P ${i + 1} ${i * 4 + 1}M 2M`);
    expect(spawnSync('qemu-io', ['-f', 'qcow2', ...cmds, top]).status).toBe(0);
    const expected = content(top);
    const vm = await boot('kill', top, 'tiny.ticks tiny.tick_ms=50');
    await vm.waitFor(/^tick 1$/m);
    await vm.put('vm.block-commit', { disk: '_disk0', rate_limit: 8 * MiB });
    for (;;) {
      const j = (await vm.get<Array<{ done: number; total: number; state: string }>>('vm.jobs')).at(-1)!;
      expect(j.state).toBe('running');
      if (j.done > j.total / 4) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await vm.kill();
    // A kill may leave leaked clusters (allocated, never referenced: harmless, `check -r leaks`
    // reclaims them), never corruption.
    const noCorruption = (image: string): void => {
      const r = qemuImg('check', '--output=json', image);
      const j = JSON.parse(r.stdout) as { corruptions?: number };
      expect(j.corruptions ?? 0, `${image}: ${r.out}`).toBe(0);
      expect([0, 3], `${image}: ${r.out}`).toContain(r.status);
    };
    noCorruption(base);
    noCorruption(top);
    expect(sha(content(top))).toBe(sha(expected));
    const again = await boot('kill2', top, 'tiny.ticks tiny.tick_ms=50');
    await again.waitFor(/^tick 1$/m);
    await again.put('vm.block-commit', { disk: '_disk0' });
    expect((await waitJob(again))['state']).toBe('completed');
    await again.kill();
    noCorruption(base);
    expect(sha(content(base))).toBe(sha(expected));
    expect(readdirSync(work).some((f) => f.includes('.tmp-'))).toBe(false);
  }, deadline(240_000));
});
