// What the tiny-kernel benches that drive tsvmm through its API and QEMU through QMP share
// (snapshot-bench, live-snapshot-bench): the HTTP calls, waiting for a socket to answer, a QMP
// client, and QEMU's microvm command line for tiny.elf.
import { request } from 'node:http';
import { connect } from 'node:net';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One tsvmm API request over its Unix socket; resolves with the status and body text. */
export function api(socketPath, method, endpoint, body) {
  return new Promise((resolvePromise, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request({
      socketPath, method, path: `/api/v1/${endpoint}`,
      headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d) => { text += d; }).on('end', () => resolvePromise({ status: res.statusCode, body: text }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

export async function apiOk(socketPath, method, endpoint, body) {
  const r = await api(socketPath, method, endpoint, body);
  if (r.status < 200 || r.status > 299) throw new Error(`${method} ${endpoint}: HTTP ${r.status} ${r.body}`);
  return r;
}

/** Polls `endpoint` until it answers 200; `proc` (with dead() and err) dying ends the wait. */
export async function pollUntil200(socketPath, endpoint, proc, intervalMs = 1, timeoutMs = 60_000) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (proc.dead()) throw new Error(`tsvmm exited: ${proc.err}`);
    try {
      const r = await api(socketPath, 'GET', endpoint);
      if (r.status === 200) return;
    } catch { /* socket not there yet */ }
    if (performance.now() > deadline) throw new Error(`${endpoint} never answered 200: ${proc.err}`);
    await sleep(intervalMs);
  }
}

/**
 * Connects to QEMU's QMP socket at `path` (retrying until it exists; `proc` dying ends that) and
 * negotiates capabilities. `cmd(execute, args)` resolves with the return value; events collect in
 * `events`, and each one wakes (and clears) the callbacks in `eventWaiters`.
 */
export async function qmpConnect(path, proc, timeoutMs = 30_000, retryMs = 1) {
  const deadline = performance.now() + timeoutMs;
  let sock;
  for (;;) {
    if (proc.dead()) throw new Error(`qemu exited: ${proc.err}`);
    try {
      sock = await new Promise((res, rej) => { const s = connect(path); s.once('connect', () => res(s)); s.once('error', rej); });
      break;
    } catch {
      if (performance.now() > deadline) throw new Error(`QMP ${path} never came up: ${proc.err}`);
      await sleep(retryMs);
    }
  }
  const q = { pending: new Map(), events: [], eventWaiters: [], nextId: 1 };
  let buf = '';
  let greeted;
  const greeting = new Promise((r) => { greeted = r; });
  sock.setEncoding('utf8').on('data', (d) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line === '') continue;
      const msg = JSON.parse(line);
      if (msg.QMP !== undefined) greeted();
      else if (msg.event !== undefined) { q.events.push(msg); const w = q.eventWaiters; q.eventWaiters = []; w.forEach((f) => f()); }
      else if (msg.id !== undefined) {
        const p = q.pending.get(msg.id);
        q.pending.delete(msg.id);
        if (msg.error !== undefined) p.reject(new Error(`QMP: ${msg.error.desc}`));
        else p.resolve(msg.return);
      }
    }
  });
  q.cmd = (execute, args) => new Promise((res, rej) => {
    const id = q.nextId++;
    q.pending.set(id, { resolve: res, reject: rej });
    sock.write(`${JSON.stringify(args === undefined ? { execute, id } : { execute, arguments: args, id })}\n`);
  });
  q.close = () => sock.destroy();
  await greeting;
  await q.cmd('qmp_capabilities');
  return q;
}

/** QEMU microvm running `kernel` (tiny.elf) with its serial console on stdout and QMP on `qmpPath`. */
export function qemuTinyArgs(kernel, memory, cmdline, qmpPath, extra = []) {
  return [
    '-M', 'microvm', '-enable-kvm', '-cpu', 'host', '-m', memory, '-smp', '1', '-nographic', '-nodefaults',
    '-serial', 'stdio', '-no-reboot', '-device', 'isa-debug-exit,iobase=0xf4,iosize=4',
    '-kernel', kernel, '-append', cmdline, '-qmp', `unix:${qmpPath},server=on,wait=off`, ...extra,
  ];
}
