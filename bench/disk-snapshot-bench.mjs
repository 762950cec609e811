#!/usr/bin/env node
// Disk snapshots on a running VM (tiny kernel, guest-images/out/tiny.elf), driven in-process
// through the VMM's controller (the same calls the API routes make):
//
//   1. Live external snapshot (vm.snapshot-disk) while the guest streams writes (seqwrite, 64 KiB
//      requests, 32 in flight) or does random reads: how long guest I/O on the disk is held (new
//      requests wait; the vCPUs keep running) — the longest stall a guest request can see beyond
//      its own service time — and the whole call. QEMU reference: the same guest and workload
//      under QEMU microvm, QMP blockdev-snapshot-sync (create + drain + flush + switch, all inside
//      the command), timed as the QMP round trip.
//   2. Full system checkpoint (vm.snapshot-create NAME) of a running VM with 1 GiB of RAM (900 MiB
//      touched by tiny.memtest) and a 1 GiB disk (fully written): the guest-visible pause
//      (pause → memory written and fsync'd → disk switched to a new overlay → resume).
//   3. Live block-commit throughput (guest running, idle) of an overlay holding 256 MiB of data
//      over a 1 GiB base, against `qemu-img commit` of a copy of the same overlay and base.
//   4. Live resize (vm.resize-disk) of a raw and a qcow2 disk while the guest streams writes: the
//      whole call (guest I/O held, image grown, driver told). QEMU reference: QMP block_resize on
//      the same guest and workload under QEMU microvm, timed as the QMP round trip.
//
// Needs `npx tsc -p tsconfig.json` (dist/), `make -C guest-images`, qemu-img, qemu-io.
// RUNS=N (default 3). TSVMM_DIST: a private copy of dist/. BENCH_DIR: scratch folder (default tmp).
// PARTS=live,checkpoint,commit,resize (default all): which of the four to run.
import { execFileSync, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { copyFileSync, existsSync, mkdtempSync, openSync, closeSync, ftruncateSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomFillSync } from 'node:crypto';

const root = resolve(import.meta.dirname, '..');
const RUNS = Number(process.env.RUNS ?? 3);
const PARTS = new Set((process.env.PARTS ?? 'live,checkpoint,commit,resize').split(','));
const dist = resolve(process.env.TSVMM_DIST ?? join(root, 'dist'));
const kernel = join(root, 'guest-images/out/tiny.elf');
for (const [file, how] of [[join(dist, 'vmm/vmm.js'), 'npx tsc -p tsconfig.json'], [kernel, 'make -C guest-images']]) {
  if (!existsSync(file)) {
    console.error(`disk-snapshot bench: ${file} is missing; run \`${how}\` first`);
    process.exit(2);
  }
}
const { Vmm } = await import(join(dist, 'vmm/vmm.js'));
const { vmConfigFromCli } = await import(join(dist, 'vmm/cli-config.js'));

const MiB = 1 << 20;
const GiB = 1 << 30;
const work = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'tsvmm-disksnap-bench-'));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (ms) => `${ms.toFixed(1)} ms`;

/** A file of `size` bytes, the first `filled` of them random (written in 16 MiB pieces). */
function makeFile(path, size, filled) {
  const fd = openSync(path, 'w');
  const buf = Buffer.alloc(16 * MiB);
  for (let at = 0; at < filled; at += buf.length) writeSync(fd, randomFillSync(buf), 0, Math.min(buf.length, filled - at), at);
  ftruncateSync(fd, size);
  closeSync(fd);
  execFileSync('sync'); // the host's own writes are not the guest's to flush
}

async function bootVm(dir, { memory, cmdline, disk }) {
  const serial = join(dir, 'serial.txt');
  const config = vmConfigFromCli({ kernel, cpus: 'boot=1', memory: `size=${memory}`, serial: `file=${serial}`, cmdline, disk: [`path=${disk},backing_files=on`] });
  const vmm = new Vmm({ onVmEnd: () => {}, stdinIsConsole: false });
  await vmm.create(config);
  await vmm.boot();
  const console_ = () => (existsSync(serial) ? readFileSync(serial, 'utf8') : '');
  const waitFor = async (re, ms = 120_000) => {
    const deadline = Date.now() + ms;
    while (!re.test(console_())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}:\n${console_()}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  return { vmm, waitFor };
}

/** A QMP connection: `cmd(execute, args)` resolves with `return` or rejects with the error. */
async function qmp(path, proc) {
  let sock;
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) throw new Error('qemu exited');
    try {
      sock = await new Promise((res, rej) => { const c = connect(path); c.once('connect', () => res(c)); c.once('error', rej); });
      break;
    } catch {
      if (i > 2000) throw new Error(`no QMP on ${path}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  const waiting = [];
  let text = '';
  sock.setEncoding('utf8').on('data', (d) => {
    text += d;
    let nl;
    while ((nl = text.indexOf('\n')) >= 0) {
      const msg = JSON.parse(text.slice(0, nl));
      text = text.slice(nl + 1);
      if (msg.return !== undefined || msg.error !== undefined || msg.QMP !== undefined) waiting.shift()?.(msg);
    }
  });
  const next = () => new Promise((r) => waiting.push(r));
  await next(); // greeting
  const cmd = async (execute, args) => {
    const reply = next();
    sock.write(`${JSON.stringify({ execute, ...(args ? { arguments: args } : {}) })}\n`);
    const msg = await reply;
    if (msg.error !== undefined) throw new Error(`QMP ${execute}: ${msg.error.desc}`);
    return msg.return;
  };
  await cmd('qmp_capabilities');
  return { cmd, close: () => sock.destroy() };
}

/** The tiny guest under QEMU microvm on `image`, running `workload`, with QMP; resolves once its disk is up. */
async function bootQemu(dir, image, format, workload) {
  const qmpPath = join(dir, 'qmp.sock');
  const proc = spawn('qemu-system-x86_64', [
    '-M', 'microvm,acpi=off', '-enable-kvm', '-cpu', 'host', '-m', '128M', '-nographic', '-nodefaults', '-serial', 'stdio',
    '-no-reboot', '-device', 'isa-debug-exit,iobase=0xf4,iosize=4', '-global', 'virtio-mmio.force-legacy=false',
    '-drive', `file=${image},format=${format},if=none,id=d0,cache=writeback,aio=threads`, '-device', 'virtio-blk-device,drive=d0',
    '-kernel', kernel, '-append', `tiny.blk=${workload} tiny.ticks`, '-qmp', `unix:${qmpPath},server=on,wait=off`,
  ], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
  try {
    const q = await qmp(qmpPath, proc);
    while (!/blk: dev0/.test(out)) await new Promise((r) => setTimeout(r, 5));
    return { proc, q };
  } catch (e) {
    proc.kill('SIGKILL');
    throw e;
  }
}

async function qemuLiveSnapshot(workload) {
  const calls = [];
  for (let run = 0; run < RUNS; run++) {
    const dir = mkdtempSync(join(work, 'qlive-'));
    makeFile(join(dir, 'vm.raw'), 512 * MiB, 512 * MiB);
    const { proc, q } = await bootQemu(dir, join(dir, 'vm.raw'), 'raw', workload);
    try {
      for (let i = 0; i < 4; i++) {
        await new Promise((r) => setTimeout(r, 150));
        const t0 = performance.now();
        await q.cmd('blockdev-snapshot-sync', { device: 'd0', 'snapshot-file': join(dir, `vm.s${i}.qcow2`), format: 'qcow2' });
        calls.push(performance.now() - t0);
      }
      q.close();
    } finally {
      proc.kill('SIGKILL');
      await new Promise((r) => proc.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return calls;
}

async function liveSnapshotPause(workload) {
  const pauses = [];
  const calls = [];
  for (let run = 0; run < RUNS; run++) {
    const dir = mkdtempSync(join(work, 'live-'));
    makeFile(join(dir, 'vm.raw'), 512 * MiB, 512 * MiB);
    const { vmm, waitFor } = await bootVm(dir, { memory: '128M', cmdline: `tiny.blk=${workload} tiny.ticks`, disk: join(dir, 'vm.raw') });
    await waitFor(/blk: dev0/);
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 150));
      const t0 = performance.now();
      await vmm.snapshotDisk({ disk: '_disk0', file: join(dir, `vm.s${i}.qcow2`) });
      calls.push(performance.now() - t0);
      pauses.push(vmm.lastDiskOperation().result.io_pause_ms);
    }
    await vmm.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
  return { pauses, calls };
}

async function systemCheckpoint() {
  const times = [];
  for (let run = 0; run < RUNS; run++) {
    const dir = mkdtempSync(join(work, 'ckpt-'));
    makeFile(join(dir, 'vm.raw'), GiB, GiB);
    const { vmm, waitFor } = await bootVm(dir, { memory: '1G', cmdline: 'tiny.memtest=900 tiny.ticks tiny.tick_ms=20', disk: join(dir, 'vm.raw') });
    await waitFor(/memtest: verify ok/);
    await waitFor(/tick 2\b/);
    const t0 = performance.now();
    await vmm.snapshotCreate({ name: 'bench' });
    const wall = performance.now() - t0;
    const listed = vmm.snapshotList({}).snapshots[0];
    const r = vmm.lastDiskOperation().result;
    times.push({ paused: listed.paused_ms, wall, size: listed.size_bytes, memory: r.memory_ms, disks: r.disks_ms });
    await vmm.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
  return times;
}

async function commitThroughput() {
  const ours = [];
  const qemu = [];
  const data = 256 * MiB;
  for (let run = 0; run < RUNS; run++) {
    const dir = mkdtempSync(join(work, 'commit-'));
    makeFile(join(dir, 'base.raw'), GiB, 64 * MiB);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', join(dir, 'top.qcow2')]);
    // 256 MiB of overlay data in 1 MiB pieces every 4 MiB-ish across the disk (a spread workload).
    const cmds = [];
    for (let i = 0; i < 256; i++) cmds.push('-c', `write -P ${(i % 250) + 1} ${i * 4}M 1M`);
    execFileSync('qemu-io', ['-f', 'qcow2', ...cmds, join(dir, 'top.qcow2')], { stdio: 'ignore' });
    copyFileSync(join(dir, 'base.raw'), join(dir, 'qbase.raw'));
    copyFileSync(join(dir, 'top.qcow2'), join(dir, 'qtop.qcow2'));
    execFileSync('qemu-img', ['rebase', '-u', '-b', 'qbase.raw', '-F', 'raw', join(dir, 'qtop.qcow2')]);
    execFileSync('sync');

    const { vmm, waitFor } = await bootVm(dir, { memory: '128M', cmdline: 'tiny.ticks tiny.tick_ms=50', disk: join(dir, 'top.qcow2') });
    await waitFor(/tick 1\b/);
    const t0 = performance.now();
    await vmm.blockCommit({ disk: '_disk0' });
    for (;;) {
      const j = vmm.blockJobs().at(-1);
      if (j.finished !== undefined) {
        if (j.state !== 'completed') throw new Error(`commit ${j.state}: ${j.error}`);
        break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    ours.push({ ms: performance.now() - t0, pivot: vmm.blockJobs().at(-1).pivot_pause_ms });
    await vmm.shutdown();

    const q0 = performance.now();
    execFileSync('qemu-img', ['commit', '-q', join(dir, 'qtop.qcow2')]);
    qemu.push(performance.now() - q0);
    execFileSync('qemu-img', ['compare', '-q', join(dir, 'base.raw'), join(dir, 'qbase.raw')]);
    rmSync(dir, { recursive: true, force: true });
  }
  return { ours, qemu, data };
}

/**
 * Grows `format` disk four times by 64 MiB while the guest streams writes: tsvmm's vm.resize-disk
 * (in-process, as the route calls it) and QEMU's QMP block_resize, alternating per run.
 */
async function liveResize(format) {
  const ours = [];
  const qemu = [];
  const sizes = [1, 2, 3, 4].map((i) => (256 + 64 * i) * MiB);
  for (let run = 0; run < RUNS; run++) {
    const dir = mkdtempSync(join(work, 'resize-'));
    const image = join(dir, `vm.${format}`);
    const fresh = () => (format === 'raw' ? makeFile(image, 256 * MiB, 0) : execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '256M']));
    fresh();
    const { vmm, waitFor } = await bootVm(dir, { memory: '128M', cmdline: 'tiny.blk=seqwrite:192 tiny.ticks', disk: image });
    await waitFor(/blk: dev0/);
    for (const size of sizes) {
      const t0 = performance.now();
      await vmm.resizeDisk({ id: '_disk0', desired_size: size });
      ours.push(performance.now() - t0);
    }
    await vmm.shutdown();
    fresh();
    const { proc, q } = await bootQemu(dir, image, format, 'seqwrite:192');
    try {
      for (const size of sizes) {
        const t0 = performance.now();
        await q.cmd('block_resize', { device: 'd0', size });
        qemu.push(performance.now() - t0);
      }
      q.close();
    } finally {
      proc.kill('SIGKILL');
      await new Promise((r) => proc.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return { ours, qemu };
}

try {
  const mbs = (bytes, ms) => `${(bytes / MiB / (ms / 1000)).toFixed(0)} MiB/s`;
  console.log(`\n## Disk snapshots (RUNS=${RUNS}, medians)\n`);
  console.log('| measurement | tsvmm | reference |');
  console.log('|---|---|---|');
  if (PARTS.has('live')) {
    const row = (what, ours, q) => console.log(`| live external snapshot — ${what} (${ours.pauses.length} snapshots) | I/O held: median ${fmt(median(ours.pauses))}, max ${fmt(Math.max(...ours.pauses))}; whole call ${fmt(median(ours.calls))} | QEMU blockdev-snapshot-sync (whole call, I/O drained inside): median ${fmt(median(q))}, max ${fmt(Math.max(...q))} |`);
    row('guest streaming writes', await liveSnapshotPause('seqwrite:448'), await qemuLiveSnapshot('seqwrite:448'));
    row('guest doing 4 KiB random reads', await liveSnapshotPause('randread:200000'), await qemuLiveSnapshot('randread:200000'));
  }
  if (PARTS.has('checkpoint')) {
    const ckpt = await systemCheckpoint();
    console.log(`| system checkpoint, 1 GiB RAM (900 MiB touched) + 1 GiB disk: guest paused | ${fmt(median(ckpt.map((c) => c.paused)))}: memory+devices ${fmt(median(ckpt.map((c) => c.memory)))}, disk switch ${fmt(median(ckpt.map((c) => c.disks)))} (state ${(median(ckpt.map((c) => c.size)) / MiB).toFixed(0)} MiB) | — |`);
  }
  if (PARTS.has('commit')) {
    const commit = await commitThroughput();
    console.log(`| commit of a 256 MiB overlay into a 1 GiB raw base | live, guest running: ${fmt(median(commit.ours.map((c) => c.ms)))} = ${mbs(commit.data, median(commit.ours.map((c) => c.ms)))}, pivot hold ${fmt(median(commit.ours.map((c) => c.pivot)))} | qemu-img commit (offline): ${fmt(median(commit.qemu))} = ${mbs(commit.data, median(commit.qemu))} |`);
  }
  if (PARTS.has('resize')) {
    for (const format of ['raw', 'qcow2']) {
      const r = await liveResize(format);
      console.log(`| live resize of a ${format} disk, +64 MiB, guest streaming writes (${r.ours.length} resizes) | vm.resize-disk: median ${fmt(median(r.ours))}, max ${fmt(Math.max(...r.ours))} | QEMU block_resize: median ${fmt(median(r.qemu))}, max ${fmt(Math.max(...r.qemu))} |`);
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
process.exit(0);
