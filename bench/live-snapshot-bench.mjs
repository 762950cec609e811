#!/usr/bin/env node
// Live snapshot (issue 14 item 2) against a paused snapshot and against QEMU's live migration to
// a file, on the same tiny kernel (guest-images/out/tiny.elf) with 1 / 2 / 4 GiB of RAM, of which
// TOUCH_MIB (default 512) is filled once by `tiny.memtest=N tiny.memtest_loop` and then only read
// (the loop re-verifies it forever, polling the 10 ms ticker every MiB): the guest dirties little
// besides its tick counter, stack and console, so a live copy should converge in a few rounds.
//
//   tsvmm live    PUT vm.snapshot {"destination_url", "live": true} on the running VM; its
//                 answer (HTTP 200, JSON) says pause_ms (the guest-visible pause, measured by the
//                 VMM), total_ms and the copy rounds.
//   tsvmm paused  what Cloud Hypervisor and Firecracker do: vm.pause, vm.snapshot, vm.resume;
//                 the guest pause is the wall time from sending vm.pause until vm.resume returns.
//   QEMU live     `migrate "exec:cat > FILE"` on the running guest until its MIGRATION event
//                 says completed, then query-migrate: its own `downtime` and `total-time`. QEMU
//                 leaves the source stopped (status postmigrate) once the stream is complete, so
//                 the bench sends `cont` at once; the STOP → RESUME events' timestamps give how
//                 long the guest really stayed stopped on this (source) side.
//   QEMU paused   stop, migrate, cont: wall time from sending stop until cont returns.
//
// Cross-check from outside, for all four: the longest gap between consecutive `tick N` lines
// (tiny.tick_ms=10) on the guest's serial console, from the last tick before the operation
// starts to the first tick after it ends. A guest that runs prints a tick every ~10 ms (more,
// nested: see the baseline gap printed under each table); a stopped guest prints none and skips
// the ticks it missed.
//
// Only the measured VM runs: the other one (both are booted together, one size at a time) is
// paused while it is measured, so the two do not share the CPUs. Runs rotate between the four,
// and the tables give medians. tsvmm's snapshot files are fsync'd; QEMU's stream is not.
//
// Needs `npx tsc -p tsconfig.json` (dist/) and `make -C guest-images`. RUNS=N (default 3),
// SIZES=1,2,4 (GiB), TOUCH_MIB=512, TSVMM_DIST=dir (default dist/; a copy outside the repo needs
// a package.json saying "type": "module" and a node_modules link), QEMU=binary,
// QEMU_DOWNTIME_LIMIT=ms (QEMU's downtime-limit; default QEMU's own, 300), BENCH_DIR (scratch).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { api, apiOk, pollUntil200, qmpConnect, qemuTinyArgs, sleep } from './lib/tiny-vmm.mjs';

const root = resolve(import.meta.dirname, '..');
const RUNS = Number(process.env.RUNS ?? 3);
const SIZES = (process.env.SIZES ?? '1,2,4').split(',').map((s) => Number(s.trim())).filter((n) => n > 0);
const TOUCH_MIB = Number(process.env.TOUCH_MIB ?? 512);
const DOWNTIME_LIMIT = process.env.QEMU_DOWNTIME_LIMIT === undefined ? undefined : Number(process.env.QEMU_DOWNTIME_LIMIT);
const kernel = join(root, 'guest-images/out/tiny.elf');
const dist = resolve(process.env.TSVMM_DIST ?? join(root, 'dist'));
const tsvmm = join(dist, 'cli/tsvmm.js');
const QEMU = process.env.QEMU ?? 'qemu-system-x86_64';
for (const [file, how] of [[tsvmm, 'npx tsc -p tsconfig.json'], [kernel, 'make -C guest-images']]) {
  if (!existsSync(file)) {
    console.error(`live snapshot bench: ${file} is missing; run \`${how}\` first`);
    process.exit(2);
  }
}

const work = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'tsvmm-livesnap-bench-'));
const MiB = 1024 * 1024;
const children = new Set();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); rmSync(work, { recursive: true, force: true }); });
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => process.exit(130));
const log = (s) => process.stderr.write(`${s}\n`);

// ---- processes with a console, and their ticks --------------------------------------------------

/**
 * A child whose stdout is the guest console. `ticks` holds every `tick N` line with the time its
 * chunk arrived; the rest of the console is kept in `out` for waitFor.
 */
function startProcess(cmd, args) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const p = { child, out: '', err: '', ticks: [], waiters: [] };
  let partial = '';
  const wake = () => { const w = p.waiters; p.waiters = []; w.forEach((f) => f()); };
  child.stdout.setEncoding('utf8').on('data', (d) => {
    const at = performance.now();
    p.out += d;
    // Keep the console bounded (ticks come every 10 ms for the whole run); markers are recent.
    if (p.out.length > 1 << 20) p.out = p.out.slice(-(1 << 19));
    const lines = (partial + d).replace(/\r/g, '').split('\n');
    partial = lines.pop();
    for (const line of lines) {
      const m = /^tick (\d+)/.exec(line);
      if (m !== null) p.ticks.push({ n: Number(m[1]), at });
    }
    wake();
  });
  child.stderr.setEncoding('utf8').on('data', (d) => { p.err += d; wake(); });
  p.exited = new Promise((r) => child.on('exit', (code, signal) => { children.delete(child); wake(); r({ code, signal }); }));
  p.dead = () => child.exitCode !== null || child.signalCode !== null;
  const until = async (ok, what, timeoutMs) => {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (ok()) return;
      if (p.dead()) throw new Error(`${cmd} exited before ${what}: ${p.err.slice(-500)} ${p.out.slice(-500)}`);
      if (performance.now() > deadline) throw new Error(`timed out waiting for ${what} from ${cmd}: ${p.err.slice(-500)} ${p.out.slice(-300)}`);
      await new Promise((r) => { const t = setTimeout(r, deadline - performance.now()); p.waiters.push(() => { clearTimeout(t); r(); }); });
    }
  };
  p.waitFor = (re, timeoutMs = 600_000) => until(() => re.test(p.out), re, timeoutMs);
  /** Waits until `count` ticks have arrived after time `after`. */
  p.ticksAfter = (after, count = 1, timeoutMs = 60_000) => until(() => p.ticks.filter((t) => t.at > after).length >= count, `${count} ticks`, timeoutMs);
  p.kill = async () => { if (!p.dead()) child.kill('SIGKILL'); await p.exited; };
  return p;
}

/**
 * The longest gap between consecutive ticks from the last tick at or before `from` to the first
 * one at or after `to` (the caller has waited for it).
 */
function maxTickGap(p, from, to) {
  const ts = p.ticks;
  let first = 0;
  for (let i = 0; i < ts.length; i++) if (ts[i].at <= from) first = i;
  let last = ts.length - 1;
  for (let i = ts.length - 1; i >= 0; i--) if (ts[i].at >= to) last = i;
  let gap = 0;
  for (let i = first + 1; i <= last; i++) gap = Math.max(gap, ts[i].at - ts[i - 1].at);
  return gap;
}

/** For the log: how many gaps of at least `min` ms the same span has, and the 5 longest as +offset:gap. */
function bigGaps(p, from, to, min = 50) {
  const ts = p.ticks;
  const gaps = [];
  for (let i = 1; i < ts.length; i++) {
    if (ts[i].at < from || ts[i - 1].at > to) continue;
    const g = ts[i].at - ts[i - 1].at;
    if (g >= min) gaps.push({ off: ts[i - 1].at - from, g });
  }
  const top = [...gaps].sort((a, b) => b.g - a.g).slice(0, 5).map((x) => `+${x.off.toFixed(0)}:${x.g.toFixed(0)}`);
  return `${gaps.length} ≥ ${min} ms; longest at ${top.join(' ')}`;
}

/** Lets `p`'s guest run `ms` and returns the longest tick gap over that time (nothing happening). */
async function baselineGap(p, ms = 500) {
  const t0 = performance.now();
  await p.ticksAfter(t0, 1);
  const from = performance.now();
  await sleep(ms);
  const to = performance.now();
  await p.ticksAfter(to, 1);
  return maxTickGap(p, from, to);
}

// ---- tsvmm over its API -------------------------------------------------------------------------

let seq = 0;
const sockPath = (tag) => join(work, `${tag}-${seq++}.sock`);

async function tsvmmBoot(memory, cmdline, procs) {
  const sock = sockPath('boot');
  const p = startProcess(process.execPath, [tsvmm, '--kernel', kernel, '--memory', `size=${memory}`, '--serial', 'tty', '--cmdline', cmdline, '--api-socket', sock]);
  procs.push(p);
  await pollUntil200(sock, 'vmm.ping', p, 5, 120_000);
  p.sock = sock;
  p.state = async () => JSON.parse((await apiOk(sock, 'GET', 'vm.info')).body).state;
  p.ensureRunning = async () => { if ((await p.state()) !== 'Running') await apiOk(sock, 'PUT', 'vm.resume'); };
  p.ensureStopped = async () => { if ((await p.state()) === 'Running') await apiOk(sock, 'PUT', 'vm.pause'); };
  return p;
}

// ---- QEMU over QMP ------------------------------------------------------------------------------

async function qemuBoot(memory, cmdline, procs) {
  const qmpPath = sockPath('qmp');
  const p = startProcess(QEMU, qemuTinyArgs(kernel, memory, cmdline, qmpPath));
  procs.push(p);
  p.qmp = await qmpConnect(qmpPath, p, 60_000, 5);
  // Unthrottled: the default bandwidth cap (32 MiB/s) would measure QEMU's limiter, not its copy.
  const params = { 'max-bandwidth': 64 * 1024 * MiB };
  if (DOWNTIME_LIMIT !== undefined) params['downtime-limit'] = DOWNTIME_LIMIT;
  await p.qmp.cmd('migrate-set-parameters', params);
  // MIGRATION events tell the bench the stream is complete: polling query-migrate (a QMP command
  // under QEMU's big lock, which the guest's serial port also needs) would disturb the guest.
  await p.qmp.cmd('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
  p.state = async () => (await p.qmp.cmd('query-status')).status;
  p.ensureRunning = async () => { if ((await p.state()) !== 'running') await p.qmp.cmd('cont'); };
  p.ensureStopped = async () => { if ((await p.state()) === 'running') await p.qmp.cmd('stop'); };
  return p;
}

/**
 * Starts a migration to `file` and waits for its MIGRATION event saying completed (query-migrate
 * every 100 ms as well, in case an event is missed); returns query-migrate's final answer.
 */
async function qemuMigrate(p, file) {
  const q = p.qmp;
  let seen = q.events.length;
  await q.cmd('migrate', { uri: `exec:cat > ${file}` });
  let lastPoll = performance.now();
  for (;;) {
    let status;
    for (; seen < q.events.length; seen++) if (q.events[seen].event === 'MIGRATION') status = q.events[seen].data.status;
    if (status === undefined && performance.now() - lastPoll >= 100) {
      status = (await q.cmd('query-migrate')).status;
      lastPoll = performance.now();
    }
    if (status === 'completed') return q.cmd('query-migrate');
    if (status === 'failed' || status === 'cancelled') {
      const s = await q.cmd('query-migrate');
      throw new Error(`QEMU migration ${status}: ${s['error-desc'] ?? ''}`);
    }
    await new Promise((r) => { const t = setTimeout(r, 100); q.eventWaiters.push(() => { clearTimeout(t); r(); }); });
  }
}

/** QMP event timestamp in ms (host wall clock). */
const eventMs = (e) => e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000;

// ---- statistics and sizes -----------------------------------------------------------------------

const median = (xs) => { if (xs.length === 0) return NaN; const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const fmtMs = (x) => (!Number.isFinite(x) ? '—' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const fmtMiB = (b) => (!Number.isFinite(b) ? '—' : (b / MiB).toFixed(1));
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '—');
const allocated = (path) => {
  const st = statSync(path);
  if (!st.isDirectory()) return st.blocks * 512;
  return readdirSync(path).reduce((n, f) => n + allocated(join(path, f)), 0);
};
const syncAll = () => new Promise((r, j) => spawn('sync').on('exit', (c) => (c === 0 ? r() : j(new Error(`sync: ${c}`)))));

// ---- the four measurements ----------------------------------------------------------------------

async function tsvmmLive(t, dir) {
  const t0 = performance.now();
  let r;
  try {
    r = await api(t.sock, 'PUT', 'vm.snapshot', { destination_url: `file://${dir}`, live: true });
  } catch (e) {
    r = { status: 0, body: String(e?.message ?? e) };
  }
  const t1 = performance.now();
  let body;
  try { body = JSON.parse(r.body); } catch { body = undefined; }
  if (r.status !== 200 || typeof body?.pause_ms !== 'number') throw new Error(`tsvmm live snapshot failed: HTTP ${r.status} ${r.body.slice(0, 200)}`);
  const state = await t.state();
  await t.ticksAfter(t1, 1);
  const res = {
    pause: body.pause_ms, total: body.total_ms, request: t1 - t0, rounds: Array.isArray(body.rounds) ? body.rounds.length : NaN,
    size: allocated(dir), written: body.memory_bytes_written, converged: body.converged, finalPages: body.final_pages,
    gap: maxTickGap(t, t0, t1), gaps: bigGaps(t, t0, t1), state,
    roundsDetail: Array.isArray(body.rounds) ? body.rounds.map((x) => `${x.pages}p/${fmtMs(x.ms)}ms`).join(' ') : '',
    phases: body.pause_phases,
  };
  rmSync(dir, { recursive: true, force: true });
  return res;
}

async function tsvmmPaused(t, dir) {
  const t0 = performance.now();
  await apiOk(t.sock, 'PUT', 'vm.pause');
  const tp = performance.now();
  await apiOk(t.sock, 'PUT', 'vm.snapshot', { destination_url: `file://${dir}` });
  const ts = performance.now();
  await apiOk(t.sock, 'PUT', 'vm.resume');
  const t1 = performance.now();
  await t.ticksAfter(t1, 1);
  const res = { pause: t1 - t0, total: t1 - t0, snapshot: ts - tp, rounds: NaN, size: allocated(dir), gap: maxTickGap(t, t0, t1) };
  rmSync(dir, { recursive: true, force: true });
  return res;
}

async function qemuLive(q, file) {
  const events = q.qmp.events.length;
  const t0 = performance.now();
  const s = await qemuMigrate(q, file);
  const tDone = performance.now();
  const status = await q.state(); // postmigrate: QEMU stopped the source at the end
  await q.qmp.cmd('cont');
  const t1 = performance.now();
  await q.ticksAfter(t1, 1);
  const evs = q.qmp.events.slice(events);
  const stop = evs.find((e) => e.event === 'STOP');
  const resume = evs.find((e) => e.event === 'RESUME');
  const res = {
    pause: s.downtime, total: s['total-time'], setup: s['setup-time'], rounds: s.ram?.['dirty-sync-count'] ?? NaN,
    transferred: s.ram?.transferred, size: allocated(file), gap: maxTickGap(q, t0, t1), gaps: bigGaps(q, t0, t1), status,
    stopped: stop !== undefined && resume !== undefined ? eventMs(resume) - eventMs(stop) : NaN,
    doneToCont: t1 - tDone,
    // When the source stopped, from the migrate command (to place it among the tick gaps).
    stopAt: stop === undefined ? NaN : eventMs(stop) - (performance.timeOrigin + t0),
  };
  rmSync(file, { force: true });
  return res;
}

async function qemuPaused(q, file) {
  const t0 = performance.now();
  await q.qmp.cmd('stop');
  const s = await qemuMigrate(q, file);
  await q.qmp.cmd('cont');
  const t1 = performance.now();
  await q.ticksAfter(t1, 1);
  const res = { pause: t1 - t0, total: t1 - t0, migrate: s['total-time'], rounds: NaN, size: allocated(file), gap: maxTickGap(q, t0, t1) };
  rmSync(file, { force: true });
  return res;
}

// ---- one RAM size -------------------------------------------------------------------------------

/**
 * One RAM size, retried from the boot when a guest dies (nested, guests triple-fault at random:
 * README, Known limits) — up to ATTEMPTS times in all.
 */
const ATTEMPTS = 3;
async function benchSize(gib) {
  for (let attempt = 1; ; attempt++) {
    const procs = [];
    try {
      return await benchSizeOnce(gib, procs);
    } catch (e) {
      const died = procs.some((p) => p.dead());
      if (!died || attempt >= ATTEMPTS) throw e;
      log(`${gib}G: a VM died (${String(e.message).split('\n')[0].slice(0, 300)}); starting this size again (attempt ${attempt + 1} of ${ATTEMPTS})`);
    } finally {
      for (const p of procs) { p.qmp?.close(); await p.kill(); }
    }
  }
}

async function benchSizeOnce(gib, procs) {
  const memory = `${gib}G`;
  const cmdline = `tiny.ticks tiny.tick_ms=10 tiny.memtest=${TOUCH_MIB} tiny.memtest_loop`;
  const tBoot = performance.now();
  const [t, q] = await Promise.all([tsvmmBoot(memory, cmdline, procs), qemuBoot(memory, cmdline, procs)]);
  await Promise.all([t.waitFor(/memtest: verify ok/), q.waitFor(/memtest: verify ok/)]);
  log(`${memory}: both guests filled ${TOUCH_MIB} MiB after ${((performance.now() - tBoot) / 1000).toFixed(1)} s`);

  const s = { tLive: [], tPaused: [], qLive: [], qPaused: [] };
  const base = { t: [], q: [] };
  // Only the measured VM runs; it runs a moment first (the baseline gap) so its guest is ticking.
  const focus = async (run, stopped) => { await stopped.ensureStopped(); await run.ensureRunning(); await syncAll(); };
  const steps = {
    tLive: async (i) => { await focus(t, q); base.t.push(await baselineGap(t)); return tsvmmLive(t, join(work, `live-${gib}-${i}`)); },
    tPaused: async (i) => { await focus(t, q); base.t.push(await baselineGap(t)); return tsvmmPaused(t, join(work, `paused-${gib}-${i}`)); },
    qLive: async (i) => { await focus(q, t); base.q.push(await baselineGap(q)); return qemuLive(q, join(work, `qlive-${gib}-${i}`)); },
    qPaused: async (i) => { await focus(q, t); base.q.push(await baselineGap(q)); return qemuPaused(q, join(work, `qpaused-${gib}-${i}`)); },
  };
  const order = ['tLive', 'qLive', 'tPaused', 'qPaused'];
  for (let i = 0; i < RUNS; i++) {
    // Rotate so that no contender always goes first after the boot or after the same other one.
    const rot = order.map((_, k) => order[(k + i) % order.length]);
    for (const k of rot) {
      const r = await steps[k](i);
      if (r !== undefined) s[k].push(r);
      if (r !== undefined) log(`${memory} run ${i + 1} ${k}: ${JSON.stringify(r, (key, v) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toFixed(2)) : v))}`);
    }
  }
  const m = (k, f) => median(s[k].map((r) => r[f]).filter((x) => typeof x === 'number'));
  return {
    gib,
    rows: Object.fromEntries(Object.keys(s).map((k) => [k, s[k].length === 0 ? undefined : {
      pause: m(k, 'pause'), total: m(k, 'total'), rounds: m(k, 'rounds'), size: m(k, 'size'), gap: m(k, 'gap'),
      request: m(k, 'request'), snapshot: m(k, 'snapshot'), stopped: m(k, 'stopped'), doneToCont: m(k, 'doneToCont'),
      setup: m(k, 'setup'), written: m(k, 'written'), finalPages: m(k, 'finalPages'), transferred: m(k, 'transferred'), migrate: m(k, 'migrate'),
      converged: s[k].map((r) => r.converged),
      phases: s[k][0]?.phases === undefined ? undefined
        : Object.fromEntries(Object.keys(s[k][0].phases).map((ph) => [ph, median(s[k].map((r) => r.phases?.[ph]).filter((x) => typeof x === 'number'))])),
      status: [...new Set(s[k].map((r) => r.status ?? r.state))].filter(Boolean),
      n: s[k].length,
    }])),
    baseline: { t: median(base.t), q: median(base.q) },
  };
}

// ---- main ---------------------------------------------------------------------------------------

const started = performance.now();
const qemuVersion = await new Promise((r) => { const c = spawn(QEMU, ['--version']); let o = ''; c.stdout.on('data', (d) => { o += d; }); c.on('exit', () => r(o.split('\n')[0])); });
log(`live snapshot bench: ${RUNS} runs each, sizes ${SIZES.join(', ')} GiB, ${TOUCH_MIB} MiB touched, ${qemuVersion}${process.env.TSVMM_NESTED ? ' (nested)' : ''}`);
const results = [];
for (const gib of SIZES) results.push(await benchSize(gib));

const out = [];
out.push(`### Live snapshot vs paused snapshot vs QEMU migrate to a file (tiny guest, ${TOUCH_MIB} MiB touched, median of ${RUNS}; ${qemuVersion}${DOWNTIME_LIMIT === undefined ? '' : `, downtime-limit ${DOWNTIME_LIMIT} ms`}${process.env.TSVMM_NESTED ? '; nested KVM' : ''})`, '');
out.push('guest pause: tsvmm live = the VMM\'s pause_ms; tsvmm paused = vm.pause sent → vm.resume returned; QEMU live = query-migrate `downtime`;',
  'QEMU paused = stop sent → cont returned. total: tsvmm live = total_ms; QEMU live = `total-time`; paused = the pause.',
  'rounds: tsvmm live = copy rounds; QEMU live = `dirty-sync-count`. max tick gap: longest gap between the guest\'s 10 ms tick lines on its serial console, seen by the bench.', '');
for (const { gib, rows, baseline } of results) {
  out.push(`#### ${gib} GiB RAM`, '');
  out.push('| | guest pause (ms) | total (ms) | rounds | size (MiB) | max tick gap (ms) |');
  out.push('|---|---:|---:|---:|---:|---:|');
  const line = (name, r) => out.push(`| ${name} | ${fmtMs(r.pause)} | ${fmtMs(r.total)} | ${Number.isFinite(r.rounds) ? r.rounds : '—'} | ${fmtMiB(r.size)} | ${fmtMs(r.gap)} |`);
  line('tsvmm live', rows.tLive);
  line('tsvmm paused (pause, snapshot, resume)', rows.tPaused);
  line('QEMU live (`migrate` running, then `cont`)', rows.qLive);
  line('QEMU paused (stop, migrate, cont)', rows.qPaused);
  const tl = rows.tLive;
  const ql = rows.qLive;
  out.push(tl === undefined || ql === undefined ? '| tsvmm live / QEMU live | — | — | | — | — |'
    : `| tsvmm live / QEMU live | ${ratio(tl.pause, ql.pause)} | ${ratio(tl.total, ql.total)} | | ${ratio(tl.size, ql.size)} | ${ratio(tl.gap, ql.gap)} |`);
  out.push('');
  const notes = [];
  notes.push(`baseline max tick gap over 0.5 s of running: tsvmm ${fmtMs(baseline.t)} ms, QEMU ${fmtMs(baseline.q)} ms`);
  if (tl !== undefined) notes.push(`tsvmm live: request ${fmtMs(tl.request)} ms, ${fmtMiB(tl.written)} MiB of memory written, ${Number.isFinite(tl.finalPages) ? tl.finalPages : '?'} pages copied in the pause, converged ${tl.converged.join('/')}, VM ${tl.status.join('/')} afterwards`);
  if (tl?.phases !== undefined) notes.push(`tsvmm live pause phases (ms): ${Object.entries(tl.phases).map(([k, v]) => `${k.replace(/_ms$/, '')} ${fmtMs(v)}`).join(', ')}`);
  if (rows.tPaused !== undefined) notes.push(`tsvmm paused: vm.snapshot request ${fmtMs(rows.tPaused.snapshot)} ms of the pause`);
  if (ql !== undefined) notes.push(`QEMU live: status ${ql.status.join('/')} at completion (its \`cont\` returned ${fmtMs(ql.doneToCont)} ms after the bench saw \`completed\`); source stopped for ${fmtMs(ql.stopped)} ms (STOP → RESUME events); setup ${fmtMs(ql.setup)} ms; ${fmtMiB(ql.transferred)} MiB of RAM transferred`);
  if (rows.qPaused !== undefined) notes.push(`QEMU paused: migrate total-time ${fmtMs(rows.qPaused.migrate)} ms of the pause`);
  out.push(...notes.map((n) => `- ${n}`), '');
}
if (results.length > 1) {
  out.push('#### Summary: guest pause (ms, median)', '');
  out.push('| RAM | tsvmm live | tsvmm paused | QEMU live downtime | QEMU paused | tsvmm live / QEMU live |');
  out.push('|---|---:|---:|---:|---:|---:|');
  for (const { gib, rows } of results) {
    const p = (r) => (r === undefined ? '—' : fmtMs(r.pause));
    out.push(`| ${gib} GiB | ${rows.tLive === undefined ? 'n/a' : p(rows.tLive)} | ${p(rows.tPaused)} | ${p(rows.qLive)} | ${p(rows.qPaused)} | ${rows.tLive === undefined || rows.qLive === undefined ? '—' : ratio(rows.tLive.pause, rows.qLive.pause)} |`);
  }
  out.push('');
}
out.push(`Total bench time ${((performance.now() - started) / 1000).toFixed(0)} s.`);
console.log(out.join('\n'));
process.exit(0);
