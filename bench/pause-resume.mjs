#!/usr/bin/env node
// Pause/resume latency through the control plane, against a real tsvmm running the tiny guest:
//   node dist/cli/tsvmm.js --kernel guest-images/out/tiny.elf --cmdline "tiny.ticks tiny.tick_ms=10" --api-socket S
// Measures, as a client sees them over the Unix socket: vmm.ping round trip, vm.pause and
// vm.resume (each until its 204 arrives), and a full pause+resume cycle; checks with vm.counters
// that the guest makes no progress while paused and does while running.
// Needs `npm run build` (dist/) and `npm run guest` (guest-images/out/tiny.elf). ITERATIONS=N.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ApiClient } from '../dist/vmm/api/client.js';

const root = resolve(import.meta.dirname, '..');
const ITERATIONS = Number(process.env.ITERATIONS ?? 50);
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
const started = performance.now();
const child = spawn(process.execPath, [tsvmm, '--kernel', kernel, '--cmdline', 'tiny.ticks tiny.tick_ms=10', '--api-socket', socket], {
  stdio: ['ignore', 'pipe', 'pipe'],
});
let childOutput = '';
child.stdout.on('data', () => {}); // guest serial output: drained, not needed
child.stderr.on('data', (c) => (childOutput += c.toString()));
const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));

const client = new ApiClient(socket, 10_000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ms = (t0) => performance.now() - t0;

function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { n: s.length, min: s[0], median: at(0.5), p95: at(0.95), max: s[s.length - 1] };
}

/** Sum of every counter: any guest activity (exits to the VMM) moves it. */
async function activity() {
  const counters = await client.counters();
  return Object.values(counters).reduce((sum, c) => sum + Object.values(c).reduce((a, b) => a + b, 0), 0);
}

async function waitForApi() {
  for (;;) {
    try {
      await client.ping();
      return ms(started);
    } catch (err) {
      if (err.code !== 'ECONNECT') throw err;
      const status = await Promise.race([exited, sleep(5)]);
      if (status !== undefined) throw new Error(`tsvmm exited early (${JSON.stringify(status)}): ${childOutput}`);
    }
  }
}

try {
  const apiReadyMs = await waitForApi();
  for (let i = 0; (await client.info()).state !== 'Running'; i++) {
    if (i > 2000) throw new Error('the VM never reached Running');
    await sleep(5);
  }
  const ping = [];
  const pause = [];
  const resume = [];
  const cycle = [];
  let frozenWhilePaused = 0;
  let progressedWhileRunning = 0;
  for (let i = 0; i < ITERATIONS; i++) {
    let t0 = performance.now();
    await client.ping();
    ping.push(ms(t0));

    t0 = performance.now();
    await client.pause();
    pause.push(ms(t0));
    const a = await activity();
    await sleep(30); // three guest ticks
    if ((await activity()) === a) frozenWhilePaused++;

    t0 = performance.now();
    await client.resume();
    resume.push(ms(t0));
    const b = await activity();
    await sleep(30);
    if ((await activity()) > b) progressedWhileRunning++;

    t0 = performance.now();
    await client.pause();
    await client.resume();
    cycle.push(ms(t0));
  }
  const result = {
    bench: 'pause-resume',
    iterations: ITERATIONS,
    api_ready_ms: apiReadyMs,
    ping_ms: stats(ping),
    pause_ms: stats(pause),
    resume_ms: stats(resume),
    pause_resume_cycle_ms: stats(cycle),
    frozen_while_paused: `${frozenWhilePaused}/${ITERATIONS}`,
    progressed_while_running: `${progressedWhileRunning}/${ITERATIONS}`,
  };
  const f = (x) => x.toFixed(2);
  console.log(`tsvmm API ready after ${f(apiReadyMs)} ms (process start to first vmm.ping answer)`);
  for (const key of ['ping_ms', 'pause_ms', 'resume_ms', 'pause_resume_cycle_ms']) {
    const s = result[key];
    console.log(`${key.padEnd(22)} median ${f(s.median)}  p95 ${f(s.p95)}  min ${f(s.min)}  max ${f(s.max)}  (n=${s.n})`);
  }
  console.log(`guest frozen while paused: ${result.frozen_while_paused}; progressed while running: ${result.progressed_while_running}`);
  console.log(JSON.stringify(result));
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
