#!/usr/bin/env node
// Snapshot and restore, tsvmm against QEMU, on the same tiny kernel (guest-images/out/tiny.elf).
//
//   1. Snapshot time and size, 1 GiB of RAM with 16 MiB and 512 MiB touched (tiny.memtest=N):
//      tsvmm: vm.pause, then the vm.snapshot request until its 204 (files fsync'd).
//      QEMU:  stop, then `migrate "exec:cat > FILE"` until query-migrate says completed
//             (QEMU 7.2 has no file: migration; the stream is not fsync'd).
//   2. Restore latency to the guest's next tick (tiny.ticks tiny.tick_ms=10), 256 MiB / 1 GiB /
//      4 GiB of RAM, from issuing the restore to the first tick line printed after resume:
//      cold  tsvmm: spawn `tsvmm --restore source_url=…[,prefault=on] --api-socket S`, poll until
//                   the VM exists, vm.resume.
//            QEMU:  spawn `qemu … -incoming "exec:cat FILE"`, connect QMP, cont.
//      warm  tsvmm: an empty tsvmm already running: vm.restore (lazy, prefault, or memory_restore_mode Copy), vm.resume.
//            QEMU:  a QEMU already running with `-incoming defer`: migrate-incoming, cont.
//      QEMU has no lazy restore (it reads the whole stream before the guest runs), so its one
//      number per size is compared with both tsvmm modes.
//   3. Where tsvmm's warm restore goes: the vm.restore request, vm.resume, resume → tick, and the
//      cost of starting one vCPU worker thread (spawn + module load), which a pre-spawned pool saves.
//
// Runs alternate between the systems; medians and ratios print as markdown tables.
// Needs `npx tsc -p tsconfig.json` (dist/) and `make -C guest-images`. RUNS=N (default 5),
// PARTS=snapshot,restore,worker (default all), TSVMM_DIST=dir (default dist/).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { apiOk, pollUntil200, qmpConnect, qemuTinyArgs, sleep } from './lib/tiny-vmm.mjs';

const root = resolve(import.meta.dirname, '..');
const RUNS = Number(process.env.RUNS ?? 5);
const kernel = join(root, 'guest-images/out/tiny.elf');
// TSVMM_DIST: a private copy of dist/ to benchmark while others rebuild the shared one.
const dist = resolve(process.env.TSVMM_DIST ?? join(root, 'dist'));
const tsvmm = join(dist, 'cli/tsvmm.js');
const QEMU = process.env.QEMU ?? 'qemu-system-x86_64';
for (const [file, how] of [[tsvmm, 'npx tsc -p tsconfig.json'], [kernel, 'make -C guest-images']]) {
  if (!existsSync(file)) {
    console.error(`snapshot bench: ${file} is missing; run \`${how}\` first`);
    process.exit(2);
  }
}

const work = mkdtempSync(join(tmpdir(), 'tsvmm-snapbench-'));
const MiB = 1024 * 1024;
const children = new Set();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); rmSync(work, { recursive: true, force: true }); });
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => process.exit(130));

// ---- processes with a console ------------------------------------------------------------------

/** A child whose stdout (the guest console) is kept with the time each chunk arrived. */
function startProcess(cmd, args) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const p = { child, out: '', err: '', chunks: [], waiters: [] };
  const wake = () => { const w = p.waiters; p.waiters = []; w.forEach((f) => f()); };
  child.stdout.setEncoding('utf8').on('data', (d) => { p.out += d; p.chunks.push({ at: performance.now(), end: p.out.length }); wake(); });
  child.stderr.setEncoding('utf8').on('data', (d) => { p.err += d; wake(); });
  p.exited = new Promise((r) => child.on('exit', (code, signal) => { children.delete(child); wake(); r({ code, signal }); }));
  p.dead = () => child.exitCode !== null || child.signalCode !== null;
  /** Waits for `re` in the console after offset `from`; returns the time the matching chunk arrived. */
  p.waitFor = async (re, from = 0, timeoutMs = 60_000) => {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const m = re.exec(p.out.slice(from));
      if (m !== null) {
        const endOfMatch = from + m.index + m[0].length;
        const chunk = p.chunks.find((c) => c.end >= endOfMatch);
        return { at: chunk.at, match: m };
      }
      if (p.dead()) throw new Error(`${cmd} exited before ${re}: ${p.err.slice(-500)} ${p.out.slice(-500)}`);
      if (performance.now() > deadline) throw new Error(`timed out waiting for ${re} from ${cmd}: ${p.err.slice(-500)} ${p.out.slice(-300)}`);
      await new Promise((r) => { const t = setTimeout(r, deadline - performance.now()); p.waiters.push(() => { clearTimeout(t); r(); }); });
    }
  };
  p.kill = async () => { if (!p.dead()) child.kill('SIGKILL'); await p.exited; };
  return p;
}

// ---- tsvmm over its API -------------------------------------------------------------------------

let seq = 0;
const sockPath = (tag) => join(work, `${tag}-${seq++}.sock`);

async function tsvmmBoot(memory, cmdline) {
  const sock = sockPath('boot');
  const p = startProcess(process.execPath, [tsvmm, '--kernel', kernel, '--memory', `size=${memory}`, '--serial', 'tty', '--cmdline', cmdline, '--api-socket', sock]);
  await pollUntil200(sock, 'vmm.ping', p, 5);
  p.sock = sock;
  return p;
}

async function tsvmmEmpty() {
  const sock = sockPath('empty');
  const p = startProcess(process.execPath, [tsvmm, '--api-socket', sock]);
  await pollUntil200(sock, 'vmm.ping', p, 5);
  p.sock = sock;
  return p;
}

// ---- QEMU over QMP ------------------------------------------------------------------------------

async function qemuBoot(memory, cmdline) {
  const qmpPath = sockPath('qmp');
  const p = startProcess(QEMU, qemuTinyArgs(kernel, memory, cmdline, qmpPath));
  p.qmp = await qmpConnect(qmpPath, p);
  // Unthrottled: the default bandwidth cap would measure QEMU's limiter, not its snapshot.
  await p.qmp.cmd('migrate-set-parameters', { 'max-bandwidth': 64 * 1024 * MiB });
  return p;
}

async function qemuSaveTo(p, file) {
  await p.qmp.cmd('migrate', { uri: `exec:cat > ${file}` });
  for (;;) {
    const s = await p.qmp.cmd('query-migrate');
    if (s.status === 'completed') return;
    if (s.status === 'failed' || s.status === 'cancelled') throw new Error(`QEMU migration ${s.status}: ${s['error-desc'] ?? ''}`);
    await sleep(1);
  }
}

// ---- statistics and tables ----------------------------------------------------------------------

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const fmtMs = (x) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const fmtMiB = (b) => (b / MiB).toFixed(1);
const ratio = (a, b) => `${(a / b).toFixed(2)}×`;
const allocated = (path) => {
  const st = statSync(path);
  if (!st.isDirectory()) return st.blocks * 512;
  return readdirSync(path).reduce((n, f) => n + statSync(join(path, f)).blocks * 512, 0);
};
const apparent = (path) => {
  const st = statSync(path);
  if (!st.isDirectory()) return st.size;
  return readdirSync(path).reduce((n, f) => n + statSync(join(path, f)).size, 0);
};
const log = (s) => process.stderr.write(`${s}\n`);

const syncAll = () => new Promise((r, j) => spawn('sync').on('exit', (c) => (c === 0 ? r() : j(new Error(`sync: ${c}`)))));

// ---- 1. snapshot time and size ------------------------------------------------------------------

async function benchSnapshot() {
  const rows = [];
  for (const touched of [16, 512]) {
    const cmdline = `tiny.memtest=${touched} tiny.ticks tiny.tick_ms=10`;
    const t = await tsvmmBoot('1G', cmdline);
    const q = await qemuBoot('1G', cmdline);
    await Promise.all([t.waitFor(/memtest: verify ok/), q.waitFor(/memtest: verify ok/)]);
    await apiOk(t.sock, 'PUT', 'vm.pause');
    await q.qmp.cmd('stop');
    const tMs = [];
    const qMs = [];
    const qSyncMs = [];
    let tSize;
    let qSize;
    for (let i = 0; i < RUNS; i++) {
      const dir = join(work, `snap-${touched}-${i}`);
      // Start each measurement with no dirty data in the page cache: on ext4 (data=ordered) an
      // fsync commits the journal and writes out other files' dirty data too, so without this
      // tsvmm's fsync would also pay for the previous run's unsynced QEMU stream.
      await syncAll();
      let t0 = performance.now();
      await apiOk(t.sock, 'PUT', 'vm.snapshot', { destination_url: `file://${dir}` });
      tMs.push(performance.now() - t0);
      tSize = { alloc: allocated(dir), apparent: apparent(dir) };
      rmSync(dir, { recursive: true });

      const file = join(work, `qsnap-${touched}-${i}`);
      await syncAll();
      t0 = performance.now();
      await qemuSaveTo(q, file);
      qMs.push(performance.now() - t0);
      // tsvmm's time includes fsync; QEMU's stream is not synced, so also time making it durable.
      await new Promise((r, j) => spawn('sync', [file]).on('exit', (c) => (c === 0 ? r() : j(new Error(`sync ${file}: ${c}`)))));
      qSyncMs.push(performance.now() - t0);
      qSize = { alloc: allocated(file), apparent: apparent(file) };
      rmSync(file);
      // QEMU refuses to migrate again from its post-migration state: run both guests a moment
      // and pause them again, so every run starts the same way on both sides.
      await q.qmp.cmd('cont');
      await apiOk(t.sock, 'PUT', 'vm.resume');
      await sleep(30);
      await q.qmp.cmd('stop');
      await apiOk(t.sock, 'PUT', 'vm.pause');
    }
    rows.push({ touched, t: median(tMs), q: median(qMs), qSync: median(qSyncMs), tSize, qSize });
    log(`snapshot ${touched} MiB touched: tsvmm ${tMs.map(fmtMs).join(' ')} ms; qemu ${qMs.map(fmtMs).join(' ')} ms; qemu+sync ${qSyncMs.map(fmtMs).join(' ')} ms`);
    q.qmp.close();
    await Promise.all([t.kill(), q.kill()]);
  }
  return rows;
}

// ---- 2. restore latency -------------------------------------------------------------------------

const TICKS = 'tiny.ticks tiny.tick_ms=10';

/** Makes the tsvmm snapshot directory and the QEMU stream file restored from for one RAM size. */
async function makeRestoreSources(memory) {
  const dir = join(work, `rsnap-${memory}`);
  const file = join(work, `rqsnap-${memory}`);
  const t = await tsvmmBoot(memory, TICKS);
  const q = await qemuBoot(memory, TICKS);
  await Promise.all([t.waitFor(/tick 3\n/), q.waitFor(/tick 3\n/)]);
  await apiOk(t.sock, 'PUT', 'vm.pause');
  await apiOk(t.sock, 'PUT', 'vm.snapshot', { destination_url: `file://${dir}` });
  await q.qmp.cmd('stop');
  await qemuSaveTo(q, file);
  q.qmp.close();
  await Promise.all([t.kill(), q.kill()]);
  return { dir, file };
}

/** Time until the first complete `tick N` line after console offset `from`. */
const nextTick = (p, from) => p.waitFor(/tick \d+\n/, from, 30_000);

async function tsvmmCold(dir, prefault) {
  const sock = sockPath('cold');
  const t0 = performance.now();
  const p = startProcess(process.execPath, [tsvmm, '--restore', `source_url=file://${dir}${prefault ? ',prefault=on' : ''}`, '--api-socket', sock]);
  await pollUntil200(sock, 'vm.info', p);
  const tRestored = performance.now();
  await apiOk(sock, 'PUT', 'vm.resume');
  const tick = await nextTick(p, 0);
  await p.kill();
  return { total: tick.at - t0, restore: tRestored - t0 };
}

/** `mode`: 'lazy' (OnDemand), 'prefault' (OnDemand + prefault) or 'copy' (memory_restore_mode Copy). */
async function tsvmmWarm(dir, mode) {
  const p = await tsvmmEmpty();
  // Let the empty VMM finish whatever it does at start (e.g. pre-spawning vCPU workers).
  await sleep(300);
  const t0 = performance.now();
  const body = mode === 'copy' ? { memory_restore_mode: 'Copy' } : { prefault: mode === 'prefault' };
  await apiOk(p.sock, 'PUT', 'vm.restore', { source_url: `file://${dir}`, ...body });
  const t1 = performance.now();
  await apiOk(p.sock, 'PUT', 'vm.resume');
  const t2 = performance.now();
  const tick = await nextTick(p, 0);
  await p.kill();
  return { total: tick.at - t0, restore: t1 - t0, resume: t2 - t1, toTick: tick.at - t2 };
}

/**
 * Waits for the incoming migration to finish, then continues the guest. (A `cont` sent earlier
 * is not enough: the stream carries the source's run state, paused, which wins over autostart.)
 */
async function contAfterIncoming(qmp) {
  for (;;) {
    const s = await qmp.cmd('query-status');
    if (s.status !== 'inmigrate') break;
    await sleep(1);
  }
  await qmp.cmd('cont');
}

async function qemuCold(memory, file) {
  const qmpPath = sockPath('qcold');
  const t0 = performance.now();
  const p = startProcess(QEMU, qemuTinyArgs(kernel, memory, TICKS, qmpPath, ['-incoming', `exec:cat ${file}`]));
  const qmp = await qmpConnect(qmpPath, p);
  await contAfterIncoming(qmp);
  const tick = await nextTick(p, 0);
  qmp.close();
  await p.kill();
  return { total: tick.at - t0 };
}

async function qemuWarm(memory, file) {
  const qmpPath = sockPath('qwarm');
  const p = startProcess(QEMU, qemuTinyArgs(kernel, memory, TICKS, qmpPath, ['-incoming', 'defer']));
  const qmp = await qmpConnect(qmpPath, p);
  await sleep(300);
  const t0 = performance.now();
  await qmp.cmd('migrate-incoming', { uri: `exec:cat ${file}` });
  await contAfterIncoming(qmp);
  const tick = await nextTick(p, 0);
  qmp.close();
  await p.kill();
  return { total: tick.at - t0 };
}

async function benchRestore() {
  const rows = [];
  for (const memory of ['256M', '1G', '4G']) {
    const { dir, file } = await makeRestoreSources(memory);
    const s = { coldLazy: [], coldPf: [], coldQ: [], warmLazy: [], warmPf: [], warmCopy: [], warmQ: [] };
    for (let i = 0; i < RUNS; i++) {
      // Alternate systems and modes so drift (page cache, other load) spreads evenly.
      s.coldQ.push(await qemuCold(memory, file));
      s.coldLazy.push(await tsvmmCold(dir, false));
      s.warmQ.push(await qemuWarm(memory, file));
      s.warmLazy.push(await tsvmmWarm(dir, 'lazy'));
      s.coldPf.push(await tsvmmCold(dir, true));
      s.warmPf.push(await tsvmmWarm(dir, 'prefault'));
      s.warmCopy.push(await tsvmmWarm(dir, 'copy'));
    }
    const m = (k, f = 'total') => median(s[k].map((r) => r[f]));
    const row = {
      memory, dataMiB: fmtMiB(allocated(dir)), qemuFileMiB: fmtMiB(apparent(file)),
      coldLazy: m('coldLazy'), coldPf: m('coldPf'), coldQ: m('coldQ'),
      warmLazy: m('warmLazy'), warmPf: m('warmPf'), warmCopy: m('warmCopy'), warmQ: m('warmQ'),
      warmLazyParts: { restore: m('warmLazy', 'restore'), resume: m('warmLazy', 'resume'), toTick: m('warmLazy', 'toTick') },
      warmPfParts: { restore: m('warmPf', 'restore'), resume: m('warmPf', 'resume'), toTick: m('warmPf', 'toTick') },
      coldLazyRestore: m('coldLazy', 'restore'),
    };
    rows.push(row);
    log(`restore ${memory}: ${JSON.stringify(Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v.map((r) => fmtMs(r.total)).join(' ')])))}`);
    rmSync(dir, { recursive: true });
    rmSync(file);
  }
  return rows;
}

// ---- 3. one vCPU worker's start-up --------------------------------------------------------------

/** Spawn a worker that loads dist/vmm/vcpu-worker.js's module graph and reports when loaded. */
async function workerStartup() {
  const url = new URL(`file://${join(dist, 'vmm/vcpu-worker.js')}`).href;
  const samples = [];
  for (let i = 0; i < Math.max(RUNS, 10); i++) {
    const t0 = performance.now();
    const w = new Worker(`import(${JSON.stringify(url)}).then(() => require('node:worker_threads').parentPort.postMessage('loaded'))`, { eval: true });
    await new Promise((res, rej) => { w.once('message', res); w.once('error', rej); });
    samples.push(performance.now() - t0);
    await w.terminate();
  }
  return { median: median(samples), first: samples[0] };
}

// ---- main ---------------------------------------------------------------------------------------

const started = performance.now();
const qemuVersion = await new Promise((r) => { const c = spawn(QEMU, ['--version']); let o = ''; c.stdout.on('data', (d) => { o += d; }); c.on('exit', () => r(o.split('\n')[0])); });
log(`snapshot bench: ${RUNS} runs each, ${qemuVersion}`);
// PARTS=snapshot,restore,worker (default all) runs a subset.
const parts = new Set((process.env.PARTS ?? 'snapshot,restore,worker').split(','));
const snapRows = parts.has('snapshot') ? await benchSnapshot() : [];
const restoreRows = parts.has('restore') ? await benchRestore() : [];
const worker = parts.has('worker') ? await workerStartup() : undefined;

const out = [];
out.push(`### Snapshot of a 1 GiB VM (median of ${RUNS}; ${qemuVersion})`, '');
out.push('tsvmm\'s time includes fsync of every file; "QEMU + sync" adds `sync FILE` after the migration completes.', '');
out.push('| touched | tsvmm time | QEMU time | QEMU + sync | tsvmm/QEMU | tsvmm/(QEMU+sync) | tsvmm on disk (apparent) | QEMU file |');
out.push('|---|---|---|---|---|---|---|---|');
for (const r of snapRows) {
  out.push(`| ${r.touched} MiB | ${fmtMs(r.t)} ms | ${fmtMs(r.q)} ms | ${fmtMs(r.qSync)} ms | ${ratio(r.t, r.q)} | ${ratio(r.t, r.qSync)} | ${fmtMiB(r.tSize.alloc)} MiB (${fmtMiB(r.tSize.apparent)}) | ${fmtMiB(r.qSize.alloc)} MiB |`);
}
out.push('', `### Restore to the guest's next tick (median of ${RUNS}, ms; tsvmm/QEMU in brackets)`, '');
out.push('| RAM | snapshot data | cold lazy | cold prefault | cold QEMU | warm lazy | warm prefault | warm Copy | warm QEMU |');
out.push('|---|---|---|---|---|---|---|---|---|');
for (const r of restoreRows) {
  out.push(`| ${r.memory} | ${r.dataMiB} MiB (QEMU ${r.qemuFileMiB}) | ${fmtMs(r.coldLazy)} (${ratio(r.coldLazy, r.coldQ)}) | ${fmtMs(r.coldPf)} (${ratio(r.coldPf, r.coldQ)}) | ${fmtMs(r.coldQ)} | ${fmtMs(r.warmLazy)} (${ratio(r.warmLazy, r.warmQ)}) | ${fmtMs(r.warmPf)} (${ratio(r.warmPf, r.warmQ)}) | ${fmtMs(r.warmCopy)} (${ratio(r.warmCopy, r.warmQ)}) | ${fmtMs(r.warmQ)} |`);
}
out.push('', '### Where tsvmm\'s warm restore goes (median, ms)', '');
out.push('| RAM | mode | vm.restore request | vm.resume request | resume → tick | cold: spawn → VM restored |');
out.push('|---|---|---|---|---|---|');
for (const r of restoreRows) {
  out.push(`| ${r.memory} | lazy | ${fmtMs(r.warmLazyParts.restore)} | ${fmtMs(r.warmLazyParts.resume)} | ${fmtMs(r.warmLazyParts.toTick)} | ${fmtMs(r.coldLazyRestore)} |`);
  out.push(`| ${r.memory} | prefault | ${fmtMs(r.warmPfParts.restore)} | ${fmtMs(r.warmPfParts.resume)} | ${fmtMs(r.warmPfParts.toTick)} | |`);
}
if (worker !== undefined) out.push('', `One vCPU worker thread started from scratch (spawn + loading vcpu-worker.js's modules): median ${fmtMs(worker.median)} ms (first ${fmtMs(worker.first)} ms).`);
out.push(`Total bench time ${((performance.now() - started) / 1000).toFixed(0)} s.`);
console.log(out.join('\n'));
process.exit(0);
