#!/usr/bin/env node
// Pause/resume latency through the control plane, against a real tsvmm running the tiny guest
// with a 1 ms tick (`tiny.ticks tiny.tick_ms=1`) and its serial port on the API's console socket:
//   node dist/cli/tsvmm.js --kernel guest-images/out/tiny.elf --cmdline "tiny.ticks tiny.tick_ms=1" \
//     --serial socket --api-socket S
// Each of CYCLES cycles (default 100) lets the guest run, pauses it, holds the pause, resumes it.
// Measured three ways:
//   client: vm.pause / vm.resume request sent → its 204 received;
//   guest:  pause request sent → arrival of the last tick before the gap (the vCPU's last output),
//           resume request sent → arrival of the first tick after it (the vCPU runs again);
//   VMM:    duration_ms of the `paused` / `resumed` events (the VMM's own clock).
// Every cycle also checks that no tick arrives while paused and that the first tick after the
// resume is the next number. Prints a markdown table (p50, p99) and a JSON line.
// Needs `npm run build` (dist/) and `npm run guest` (guest-images/out/tiny.elf). CYCLES=N.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ApiClient } from '../dist/vmm/api/client.js';

const root = resolve(import.meta.dirname, '..');
const CYCLES = Number(process.env.CYCLES ?? 100);
const TICK_MS = Number(process.env.TICK_MS ?? 1);
const RUN_MS = 20; // running time before each pause (~20 ticks)
const HOLD_MS = 30; // paused time (~30 ticks would have been printed)
const kernel = join(root, 'guest-images/out/tiny.elf');
const tsvmm = join(root, 'dist/cli/tsvmm.js');
for (const [file, how] of [[tsvmm, 'npm run build'], [kernel, 'npm run guest']]) {
  if (!existsSync(file)) {
    console.error(`pause-resume bench: ${file} is missing; run \`${how}\` first`);
    process.exit(2);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-bench-'));
const socket = join(dir, 'api.sock');
const child = spawn(process.execPath, [tsvmm, '--kernel', kernel, '--cmdline', `tiny.ticks tiny.tick_ms=${TICK_MS}`, '--memory', 'size=64M', '--serial', 'socket', '--api-socket', socket], {
  stdio: ['ignore', 'ignore', 'pipe'],
});
let childErr = '';
child.stderr.on('data', (c) => (childErr += c.toString()));
const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));

const client = new ApiClient(socket, 10_000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Nearest-rank percentile. */
function percentile(samples, q) {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil(q * s.length) - 1)];
}

async function waitForRunning() {
  for (let i = 0; ; i++) {
    const status = await Promise.race([exited, sleep(10)]);
    if (status !== undefined) throw new Error(`tsvmm exited early (${JSON.stringify(status)}): ${childErr}`);
    try {
      if ((await client.info()).state === 'Running') return;
    } catch (err) {
      if (err.code !== 'ECONNECT' && err.code !== 'ENOVM') throw err;
    }
    if (i > 3000) throw new Error('the VM never reached Running');
  }
}

/** Console lines with arrival times; `ticks` holds every `tick <n>` as {n, at}. */
function tapConsole(ws) {
  const ticks = [];
  let partial = '';
  ws.on('message', (data) => {
    const at = performance.now();
    const parts = (partial + data.toString('latin1')).split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      const m = /^tick (\d+)/.exec(line.replace(/\r/g, ''));
      if (m !== null) ticks.push({ n: Number(m[1]), at });
    }
  });
  return ticks;
}

async function waitForTickAfter(ticks, index, deadlineMs = 5000) {
  const end = performance.now() + deadlineMs;
  while (ticks.length <= index) {
    if (performance.now() > end) throw new Error('no tick within 5 s of resuming');
    await sleep(0.2);
  }
  return ticks[index];
}

try {
  await waitForRunning();
  const ticks = tapConsole(await client.openWebSocket('vm.console'));
  const vmmDurations = { paused: [], resumed: [] };
  const events = await client.events((e) => {
    if (e.event in vmmDurations) vmmDurations[e.event].push(e.properties.duration_ms);
  });
  await sleep(200);
  if (ticks.length === 0) throw new Error(`the guest prints no ticks: ${childErr}`);

  const rows = { pauseClient: [], pauseGuest: [], resumeClient: [], resumeGuest: [], ping: [] };
  let ticksWhilePaused = 0;
  let continuous = 0;
  for (let i = 0; i < CYCLES; i++) {
    let t0 = performance.now();
    await client.ping();
    rows.ping.push(performance.now() - t0);
    await sleep(RUN_MS);

    t0 = performance.now();
    await client.pause();
    rows.pauseClient.push(performance.now() - t0);
    await sleep(HOLD_MS);
    // Ticks printed before the vCPU stopped were flushed before the 204; the last one marks the stop.
    const before = ticks.length;
    const last = ticks[before - 1];
    rows.pauseGuest.push(last.at - t0);
    await sleep(5);
    if (ticks.length !== before) ticksWhilePaused++;

    const t2 = performance.now();
    await client.resume();
    rows.resumeClient.push(performance.now() - t2);
    const first = await waitForTickAfter(ticks, before);
    rows.resumeGuest.push(first.at - t2);
    if (first.n === last.n + 1) continuous++;
  }
  await sleep(100);
  events.close();

  const f = (x) => x.toFixed(2);
  const table = [
    ['vmm.ping round trip', 'client', rows.ping],
    ['vm.pause', 'client: request → 204', rows.pauseClient],
    ['vm.pause', 'guest: request → last tick', rows.pauseGuest],
    ['vm.pause', 'VMM: `paused` duration_ms', vmmDurations.paused],
    ['vm.resume', 'client: request → 204', rows.resumeClient],
    ['vm.resume', 'guest: request → first tick', rows.resumeGuest],
    ['vm.resume', 'VMM: `resumed` duration_ms', vmmDurations.resumed],
  ];
  console.log(`pause/resume latency, ${CYCLES} cycles, tiny guest ticking every ${TICK_MS} ms (ms)\n`);
  console.log('| operation | measured as | p50 | p99 | min | max | n |');
  console.log('|---|---|---:|---:|---:|---:|---:|');
  const result = { bench: 'pause-resume', cycles: CYCLES };
  for (const [op, how, s] of table) {
    console.log(`| ${op} | ${how} | ${f(percentile(s, 0.5))} | ${f(percentile(s, 0.99))} | ${f(Math.min(...s))} | ${f(Math.max(...s))} | ${s.length} |`);
    result[`${op} ${how}`] = { p50: percentile(s, 0.5), p99: percentile(s, 0.99), n: s.length };
  }
  console.log(`\nticks while paused: ${ticksWhilePaused}/${CYCLES} cycles; first tick after resume = last + 1: ${continuous}/${CYCLES} cycles`);
  result.ticks_while_paused = ticksWhilePaused;
  result.continuous_resumes = continuous;
  console.log(JSON.stringify(result));
  if (ticksWhilePaused > 0 || continuous !== CYCLES) process.exitCode = 1;
  await client.shutdownVmm();
  const end = await Promise.race([exited, sleep(5000).then(() => 'timeout')]);
  if (end === 'timeout') throw new Error('tsvmm did not exit within 5 s of vmm.shutdown');
} catch (err) {
  console.error(`pause-resume bench failed: ${err.message}`);
  process.exitCode = 1;
} finally {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
