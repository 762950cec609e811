#!/usr/bin/env node
// Restores a running SMP Linux guest many times in a row and checks, after every restore, that
// every vCPU still runs its tasks. This is the proof for a bug seen before: after a restore, CPU 1
// of a 2-vCPU Linux sometimes never ran its tasks again (`rcu: INFO: rcu_preempt detected stalls
// on CPUs/tasks: 1-...0`).
//
// The guest (Debian's kernel + guest-images/out/linux/initramfs.cpio.gz) runs one counter loop
// pinned to each CPU (busybox taskset), each writing its count to /tmp/cpuN every 50 ms. Each
// cycle: `tsvmm --restore` the previous cycle's snapshot in a new process, vm.resume, wait until
// every per-CPU counter and every CPU's local-timer interrupt count (/proc/interrupts LOC) has
// moved past its value at the restore, check the kernel log for RCU stalls, then pause, snapshot
// to a new directory and SIGKILL the process: so every cycle restores a snapshot taken at a
// different moment of a guest that was itself restored. Prints one line per cycle and a summary
// with timings (ms: restore = spawn until the VM exists; resume = vm.resume; progress = resume
// until every CPU had moved on).
//
//   node bench/linux-restore-loop.mjs [--restores 20] [--cpus 2] [--memory 512M] [--prefault]
//        [--progress-timeout 60] [--keep] [--verbose] [--save-json DIR]
// --save-json copies each snapshot's vm.json (vCPU and VM state, no memory) to DIR/snap-N.json.
// Needs `npm run build` and `npm run guest`, and KVM (without /dev/kvm run it under
// tools/nested/run.mjs). Exit status 0 when every cycle continued on every CPU, else 1.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const root = resolve(import.meta.dirname, '..');
const { values: opt } = parseArgs({
  options: {
    restores: { type: 'string', default: '20' },
    cpus: { type: 'string', default: '2' },
    memory: { type: 'string', default: '512M' },
    prefault: { type: 'boolean', default: false },
    'progress-timeout': { type: 'string', default: '60' },
    keep: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
    'save-json': { type: 'string' },
  },
});
const RESTORES = Number(opt.restores);
const CPUS = Number(opt.cpus);
const PROGRESS_TIMEOUT_MS = Number(opt['progress-timeout']) * 1000;
const tsvmm = join(root, 'dist/cli/tsvmm.js');
const linux = join(root, 'guest-images/out/linux');
for (const [file, how] of [[tsvmm, 'npm run build'], [join(linux, 'vmlinuz'), 'npm run guest'], [join(linux, 'initramfs.cpio.gz'), 'npm run guest']]) {
  if (!existsSync(file)) {
    console.error(`linux-restore-loop: ${file} is missing; run \`${how}\` first`);
    process.exit(2);
  }
}

// nmi_watchdog=0 on the guest command line for the same reason: the guest's hard-lockup detector
// keeps a PMU counter running, a perf event on the vCPU thread in the host, and perf's static key
// is patched the same way when the host's first such event appears and its last goes.
// One empty KVM VM held for the whole run: the host kernel live-patches its scheduler when its
// first KVM VM is created and its last destroyed (KVM's preempt-notifier static key), and under
// QEMU's TCG (the nested test host) that patching was seen to livelock both host CPUs for
// minutes. Every cycle here ends one tsvmm and starts another; with this VM the key stays on.
const { Kvm } = await import(join(root, 'dist/kvm/system.js'));
const heldKvm = Kvm.open();
const heldVm = heldKvm.createVm();

const work = mkdtempSync(join(tmpdir(), 'tsvmm-restore-loop-'));
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  if (!opt.keep) rmSync(work, { recursive: true, force: true });
});
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => process.exit(130));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const started = performance.now();
/** --verbose: every step with its time since the start, to see where a slow or stuck cycle is. */
const step = (what) => { if (opt.verbose) console.log(`  [${((performance.now() - started) / 1000).toFixed(1)} s] ${what}`); };

// ---- a tsvmm process whose serial console is its stdio -------------------------------------------

function startTsvmm(args) {
  const child = spawn(process.execPath, [tsvmm, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  child.stdin.on('error', () => {});
  const p = { child, out: '', err: '', waiters: [], nextId: 1 };
  const wake = () => { const w = p.waiters; p.waiters = []; w.forEach((f) => f()); };
  child.stdout.setEncoding('utf8').on('data', (d) => { p.out += d; wake(); });
  child.stderr.setEncoding('utf8').on('data', (d) => { p.err += d; wake(); });
  p.exited = new Promise((r) => child.on('exit', (code) => { children.delete(child); wake(); r(code); }));
  return p;
}

async function waitFor(p, re, timeoutMs, from = 0) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = p.out.slice(from).replace(/\r/g, '').match(re);
    if (m) return m;
    if (p.child.exitCode !== null) throw new Error(`tsvmm exited (${p.child.exitCode}) waiting for ${re}\n${p.out.slice(-1500)}\n${p.err.slice(-1500)}`);
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timed out waiting for ${re}\n${p.out.slice(-1500)}\n${p.err.slice(-1500)}`);
    await new Promise((r) => { const t = setTimeout(r, left); p.waiters.push(() => { clearTimeout(t); r(); }); });
  }
}

/** Runs a shell command in the guest; the markers expand only in the shell's output (see test/support/guest-shell.ts). */
async function sh(p, command, timeoutMs = 60_000) {
  const id = p.nextId++;
  const from = p.out.length;
  p.child.stdin.write(`echo "@@S${id}@$((0))"; ${command}; echo "@@E${id}@$?@$((0))"\n`);
  const m = await waitFor(p, new RegExp(`@@S${id}@0\\n([\\s\\S]*?)@@E${id}@(\\d+)@0`), timeoutMs, from);
  return { output: m[1].replace(/\n$/, ''), status: Number(m[2]) };
}

function api(socketPath, method, path, body) {
  return new Promise((res, rej) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request({ socketPath, method, path: `/api/v1/${path}`, timeout: 120_000, headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {} }, (r) => {
      let text = '';
      r.setEncoding('utf8').on('data', (d) => { text += d; }).on('end', () => res({ status: r.statusCode, body: text }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in 120 s`)));
    req.on('error', rej);
    req.end(payload);
  });
}
async function apiOk(socketPath, method, path, body) {
  const r = await api(socketPath, method, path, body);
  if (r.status < 200 || r.status > 299) throw new Error(`${method} ${path}: HTTP ${r.status} ${r.body}`);
}
async function waitForVm(p, socketPath) {
  const deadline = Date.now() + 300_000;
  for (;;) {
    if (p.child.exitCode !== null) throw new Error(`tsvmm exited ${p.child.exitCode}: ${p.err}`);
    if (Date.now() > deadline) throw new Error(`the restored VM did not appear in 300 s; tsvmm stderr: ${p.err}`);
    try {
      const r = await api(socketPath, 'GET', 'vm.info');
      if (r.status === 200) return;
    } catch { /* not listening yet */ }
    await sleep(20);
  }
}

// ---- guest probes --------------------------------------------------------------------------------

const COUNTERS = Array.from({ length: CPUS }, (_, c) => `/tmp/cpu${c}`).join(' ');
async function progress(p) {
  for (let attempt = 0; ; attempt++) {
    const r = await sh(p, `cat ${COUNTERS}; grep LOC: /proc/interrupts`);
    const lines = r.output.split('\n');
    // A read can land between a loop's truncation of its file and its write: read again then.
    const counters = lines.slice(0, CPUS).map((l) => (/^\d+$/.test(l) ? Number(l) : NaN));
    const loc = (lines[CPUS] ?? '').trim().split(/\s+/).slice(1, 1 + CPUS).map(Number);
    if (counters.every(Number.isFinite) && loc.length === CPUS && loc.every(Number.isFinite)) return { counters, loc };
    if (attempt === 5) throw new Error(`cannot parse progress:\n${r.output}`);
  }
}

// ---- the run ------------------------------------------------------------------------------------

const t0 = performance.now();
let socket = join(work, 'boot.sock');
let vm = startTsvmm(['--kernel', join(linux, 'vmlinuz'), '--initramfs', join(linux, 'initramfs.cpio.gz'), '--cpus', `boot=${CPUS}`,
  '--memory', `size=${opt.memory}`, '--cmdline', 'console=ttyS0 panic=-1 nmi_watchdog=0', '--serial', 'tty', '--api-socket', socket]);
await waitFor(vm, /linux: init ok/, 600_000);
// Echo stays on: with echo off, busybox ash (PID 1 here) exits when a SIGCHLD interrupts its read.
await sh(vm, 'dmesg -n 1');
const clock = await sh(vm, 'cat /sys/devices/system/clocksource/clocksource0/current_clocksource; grep -o -w -E "constant_tsc|nonstop_tsc|tsc_deadline_timer|x2apic" /proc/cpuinfo | sort -u | tr "\\n" " "; dmesg | grep -i -E "tsc|clocksource" | tail -n 8');
console.log(`guest clock: ${clock.output.replace(/\n/g, '\n  ')}`);
const saveJson = (dir, n) => {
  if (opt['save-json'] === undefined) return;
  mkdirSync(opt['save-json'], { recursive: true });
  copyFileSync(join(dir, 'vm.json'), join(opt['save-json'], `snap-${n}.json`));
};
// One counter loop pinned to each CPU.
const loops = Array.from({ length: CPUS }, (_, c) => `taskset -c ${c} sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/cpu${c}; usleep 50000; done' &`).join(' ');
await sh(vm, `${loops} sleep 1`);
console.log(`booted ${CPUS}-vCPU Linux in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${RESTORES} restore cycles${opt.prefault ? ' (prefault)' : ''}`);
let snap = join(work, 'snap-0');
await apiOk(socket, 'PUT', 'vm.pause');
await apiOk(socket, 'PUT', 'vm.snapshot', { destination_url: `file://${snap}` });
saveJson(snap, 0);
vm.child.kill('SIGKILL');
await vm.exited;

const rows = [];
let failures = 0;
for (let i = 1; i <= RESTORES; i++) {
  socket = join(work, `r${i}.sock`);
  const tStart = performance.now();
  vm = startTsvmm(['--restore', `source_url=file://${snap}${opt.prefault ? ',prefault=on' : ''}`, '--api-socket', socket]);
  let row;
  try {
    step(`restore ${i}: spawned`);
    await waitForVm(vm, socket);
    step(`restore ${i}: VM restored`);
    const tRestored = performance.now();
    await apiOk(socket, 'PUT', 'vm.resume');
    const tResumed = performance.now();
    step(`restore ${i}: resumed`);
    const before = await progress(vm);
    step(`restore ${i}: shell answered`);
    let now = before;
    const deadline = Date.now() + PROGRESS_TIMEOUT_MS;
    // Moved on: each counter by 3 iterations (150 ms of guest time), each CPU's timer by 2 interrupts.
    const moved = (s) => s.counters.every((n, c) => n >= before.counters[c] + 3) && s.loc.every((n, c) => n >= before.loc[c] + 2);
    while (!moved(now) && Date.now() < deadline) {
      await sleep(200);
      now = await progress(vm);
    }
    const tProgress = performance.now();
    const stalls = (await sh(vm, 'dmesg | grep -c "rcu.*stall" || true')).output.trim();
    const ok = moved(now) && stalls === '0';
    row = { i, ok, restoreMs: tRestored - tStart, resumeMs: tResumed - tRestored, progressMs: tProgress - tResumed, before, now, stalls };
    if (!ok) {
      failures++;
      row.dmesg = (await sh(vm, 'dmesg | tail -n 30')).output;
    }
    step(`restore ${i}: checked; snapshot`);
    const next = join(work, `snap-${i}`);
    await apiOk(socket, 'PUT', 'vm.pause');
    await apiOk(socket, 'PUT', 'vm.snapshot', { destination_url: `file://${next}` });
    saveJson(next, i);
    if (!opt.keep) rmSync(snap, { recursive: true, force: true });
    snap = next;
    step(`restore ${i}: snapshot written`);
  } catch (e) {
    failures++;
    row = { i, ok: false, error: e.message };
  } finally {
    vm.child.kill('SIGKILL');
    await vm.exited;
  }
  rows.push(row);
  const fmt = (s) => s ? `cpu counters ${s.counters.join('/')} LOC ${s.loc.join('/')}` : '';
  console.log(row.error !== undefined
    ? `restore ${i}: FAILED: ${row.error}`
    : `restore ${i}: ${row.ok ? 'ok' : 'STALLED'} restore ${row.restoreMs.toFixed(0)} ms, resume ${row.resumeMs.toFixed(0)} ms, all CPUs moved on within ${row.progressMs.toFixed(0)} ms; ${fmt(row.before)} -> ${fmt(row.now)}; rcu stall lines ${row.stalls}`);
  if (row.dmesg) console.log(row.dmesg);
  if (row.error !== undefined) break; // without a snapshot of this cycle there is nothing to go on from
}

const ok = rows.filter((r) => r.ok);
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : NaN; };
console.log(`\n| restores | continued on all ${CPUS} CPUs | restore ms (median) | resume ms (median) | resume → all CPUs moved on, ms (median / max) |`);
console.log('|---:|---:|---:|---:|---:|');
console.log(`| ${rows.length} | ${ok.length} | ${med(ok.map((r) => r.restoreMs)).toFixed(0)} | ${med(ok.map((r) => r.resumeMs)).toFixed(0)} | ${med(ok.map((r) => r.progressMs)).toFixed(0)} / ${Math.max(...ok.map((r) => r.progressMs)).toFixed(0)} |`);
console.log(JSON.stringify({ bench: 'linux-restore-loop', cpus: CPUS, prefault: opt.prefault, restores: rows.length, continued: ok.length, failures }));
heldVm.close();
heldKvm.close();
process.exitCode = failures === 0 && rows.length === RESTORES ? 0 : 1;
