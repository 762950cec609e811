import { connect } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { VmState } from '../../src/vmm/config.js';
import type { VmmEvent } from '../../src/vmm/controller.js';
import { parseRawResponse, rawExchange } from '../vmm/api/helpers.js';
import { RealVmm, sleep, type ConsoleTap } from '../vmm/api/real-tsvmm.js';
import { tinyElf } from '../support/tsvmm-process.js';
import { prng } from '../support/prng.js';
import { deadline } from '../support/timing.js';

/**
 * Fuzz of the control plane against the real tsvmm with a ticking tiny guest: a few hundred
 * seeded random requests (well-formed lifecycle calls mixed with junk methods, paths, bodies,
 * truncated and garbage requests, oversized bodies, slow and half-closed clients, and bursts of
 * conflicting requests during a snapshot). Afterwards the VMM must answer, its state must be the
 * one the successful requests imply, and the guest must still tick.
 */


const SEED = 0x5eed_f022;
const REQUESTS = 360;
const WORKERS = 4;
const TICKS = 'tiny.ticks tiny.tick_ms=10';
const CONFIG = { memory: { size: 64 << 20 }, payload: { kernel: tinyElf, cmdline: TICKS }, serial: { mode: 'Socket' } };
const ALLOWED = new Set([200, 204, 400, 404, 405, 408, 409, 413, 426, 431, 500]);
/** Lifecycle routes whose success (204) emits exactly one completion event. */
const COMPLETION: Record<string, string> = {
  'vm.pause': 'paused', 'vm.resume': 'resumed', 'vm.boot': 'booted', 'vm.reboot': 'rebooted',
  'vm.shutdown': 'shutdown', 'vm.snapshot': 'snapshotted', 'vm.restore': 'restored', 'vm.create': 'created',
};
const LIFECYCLE = Object.keys(COMPLETION);

interface Req {
  data: Buffer;
  halfClose: boolean;
  /** Send in small pieces with pauses (a slow client that does finish). */
  trickle?: boolean;
  /** For a vm.snapshot call: where it writes (restorable once it answered 204). */
  snapshotDir?: string;
}

function request(method: string, path: string, body: string | Buffer = '', headers: string[] = []): Buffer {
  const head = `${method} ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n${headers.map((h) => `${h}\r\n`).join('')}`;
  const length = `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head + length), Buffer.from(body)]);
}

/** Calls that are valid in each state, weighted towards pause/resume (the ones users repeat). */
const VALID_IN: Record<VmState, string[]> = {
  Created: ['vm.boot'],
  Running: ['vm.pause', 'vm.pause', 'vm.pause', 'vm.reboot', 'vm.shutdown'],
  Paused: ['vm.resume', 'vm.resume', 'vm.snapshot', 'vm.shutdown'],
  Shutdown: ['vm.boot', 'vm.restore'],
};

function makeRequest(rand: () => number, scratch: string, snapshots: string[], n: number, state: VmState | undefined): Req {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const bytes = (k: number) => Buffer.from(Array.from({ length: k }, () => Math.floor(rand() * 256)));
  const kind = rand();
  if (kind < 0.45) {
    // A well-formed call, mostly one that is valid in the state the events last reported (so the
    // VM really moves through its lifecycle), else any (400s, 409s with the other workers).
    const route = state !== undefined && rand() < 0.6
      ? pick(VALID_IN[state])
      : pick([...LIFECYCLE, 'vm.info', 'vm.counters', 'vmm.ping']);
    let body = '';
    let snapshotDir: string | undefined;
    if (route === 'vm.snapshot') {
      snapshotDir = join(scratch, `fuzz-snap-${n}`);
      body = JSON.stringify({ destination_url: pathToFileURL(snapshotDir).href });
    } else if (route === 'vm.restore') {
      body = JSON.stringify({ source_url: pathToFileURL(snapshots.at(-1) ?? join(scratch, 'none')).href, prefault: rand() < 0.5 });
    } else if (route === 'vm.create') {
      body = JSON.stringify(CONFIG);
    }
    const method = route.startsWith('vm.info') || route === 'vm.counters' || route === 'vmm.ping' ? 'GET' : 'PUT';
    const req: Req = { data: request(method, `/api/v1/${route}`, body), halfClose: rand() < 0.3, trickle: rand() < 0.05 };
    if (snapshotDir !== undefined) req.snapshotDir = snapshotDir;
    return req;
  }
  if (kind < 0.52) return { data: bytes(1 + Math.floor(rand() * 400)), halfClose: true }; // garbage
  if (kind < 0.57) {
    // Oversized: declared and actually sent (1 MiB + a bit), or only declared.
    const size = (1 << 20) + 1 + Math.floor(rand() * 4096);
    const sendAll = rand() < 0.5;
    const head = Buffer.from(`PUT /api/v1/${pick(['vm.create', 'vm.snapshot', 'vm.restore'])} HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`);
    return { data: sendAll ? Buffer.concat([head, Buffer.alloc(size, 0x7b)]) : head, halfClose: !sendAll };
  }
  const method = pick(['GET', 'PUT', 'PUT', 'POST', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'G\u0001T', 'PUTT']);
  const name = pick([...LIFECYCLE, 'vm.info', 'vm.counters', 'vmm.ping', 'vmm.events', 'vm.console']);
  const path = pick([`/api/v1/${name}`, `/api/v1/${name}`, '/', '/api/v1', '/api/v1/vm.%00info', `/api/v1/${'a'.repeat(3000)}`,
    '/api/v1/vm.info?x=%zz', '*', '/../../etc/passwd', `/api/v2/${name}`, `/api/v1/${name}/`]);
  const bodies: Array<() => string | Buffer> = [
    () => '',
    () => JSON.stringify(CONFIG),
    () => JSON.stringify({ ...CONFIG, serial: { mode: pick(['Null', 'Nope', 7]) } }),
    () => JSON.stringify({ ...CONFIG, cpus: { boot_vcpus: pick([0, -1, 1.5, 300, '2']) } }),
    () => JSON.stringify({ destination_url: pick(['file:///proc/nope', 'http://x/y', '', 'file://', 7]) }),
    () => JSON.stringify({ source_url: pick(['file:///nonexistent', 'file:///etc', 'ftp://x']), prefault: pick([true, 'yes', 1]) }),
    () => JSON.stringify({ destination_url: 'file:///tmp/x', compress: true }),
    () => JSON.stringify(CONFIG).slice(0, Math.floor(rand() * 80)),
    () => JSON.stringify(pick([null, 1, 'x', [], {}, { cpus: [] }, { payload: { kernel: {} } }, { disks: [{ path: 3 }] }])),
    () => bytes(Math.floor(rand() * 300)),
    () => '{"a":'.repeat(3000),
    () => `{"destination_url":"${'\\u0000'.repeat(50)}"}`,
  ];
  const body = pick(bodies)();
  const bodyLength = Buffer.byteLength(body);
  const headers = ['Host: localhost', 'Connection: close'];
  const truncate = rand() < 0.15;
  if (rand() < 0.85) headers.push(`Content-Length: ${truncate ? bodyLength + 1 + Math.floor(rand() * 100) : bodyLength}`);
  if (rand() < 0.3) headers.push(`Content-Type: ${pick(['application/json', 'text/plain', ''])}`);
  if (rand() < 0.05) headers.push('Transfer-Encoding: chunked');
  if (rand() < 0.03) headers.push(`X-Big: ${'h'.repeat(20_000)}`);
  let data = Buffer.concat([Buffer.from(`${method} ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`), Buffer.from(body)]);
  if (rand() < 0.1) data = data.subarray(0, Math.floor(rand() * data.length)); // cut anywhere
  return { data, halfClose: truncate || rand() < 0.5, trickle: rand() < 0.04 };
}

/** Writes `data` in small pieces with short pauses, then reads the answer until close. */
function trickleExchange(socketPath: string, data: Buffer, halfClose: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('trickled request: no close from the server within 15 s'));
    }, deadline(15_000));
    s.on('data', (c) => chunks.push(c));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    void (async () => {
      for (let i = 0; i < data.length && !s.destroyed; i += 16) {
        s.write(data.subarray(i, i + 16));
        await sleep(15);
      }
      if (halfClose && !s.destroyed) s.end();
    })();
  });
}

/** A client that starts a request and never finishes it: the server must cut it off (408). */
function stalledClient(socketPath: string): Promise<{ answer: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = connect(socketPath);
    const chunks: Buffer[] = [];
    s.on('data', (c) => chunks.push(c));
    s.on('error', () => {});
    s.on('close', () => resolve({ answer: Buffer.concat(chunks).toString('utf8'), ms: performance.now() - t0 }));
    s.write('PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\n');
  });
}

/** Replays the event stream into the VM state it implies. */
function replay(events: readonly VmmEvent[]): VmState | undefined {
  const next: Record<string, VmState> = {
    created: 'Created', booted: 'Running', paused: 'Paused', resumed: 'Running', rebooted: 'Running', shutdown: 'Shutdown', restored: 'Paused',
  };
  let state: VmState | undefined;
  for (const e of events) state = next[e.event] ?? state;
  return state;
}

describe('API fuzz against the real VMM', () => {
  let v: RealVmm;
  let tap: ConsoleTap;
  const events: VmmEvent[] = [];

  beforeAll(async () => {
    v = await RealVmm.start({ cmdline: TICKS });
    await v.client.events((e) => events.push(e));
    tap = await v.console();
    await tap.moreTicks(2);
  });
  afterAll(async () => {
    await tap?.close();
    await v?.stop();
  });

  test(`${REQUESTS} seeded random requests (seed ${SEED.toString(16)}) leave the VMM serving, consistent and ticking`, { timeout: deadline(240_000) }, async () => {
    // A retried attempt starts from the state the one before left, with events of its own: only
    // the events from here on count against this attempt's answers.
    const eventsBefore = events.length;
    const attemptEvents = (): VmmEvent[] => events.slice(eventsBefore);
    const rand = prng(SEED);
    const snapshots: string[] = [];
    const statuses = new Map<number, number>();
    const successes = new Map<string, number>();
    let unanswered = 0;
    let conflicts = 0;
    const failures: string[] = [];
    const stalled = [stalledClient(v.socketPath), stalledClient(v.socketPath)];

    const send = async (req: Req, label: string): Promise<number | undefined> => {
      const text = req.trickle === true
        ? await trickleExchange(v.socketPath, req.data, req.halfClose)
        : await rawExchange(v.socketPath, req.data, { halfClose: req.halfClose, timeoutMs: deadline(60_000) });
      if (text === '') {
        unanswered++;
        return undefined;
      }
      const { status } = parseRawResponse(text);
      expect(ALLOWED.has(status), `${label} (${req.data.subarray(0, 60).toString('latin1')}) got "${text.slice(0, 300)}"`).toBe(true);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      // Junk requests can be valid calls by chance: what counts is the request line that got 204.
      const called = /^PUT \/api\/v1\/([a-z.]+) HTTP/.exec(req.data.subarray(0, 64).toString('latin1'))?.[1];
      if (status === 204 && called !== undefined && LIFECYCLE.includes(called)) successes.set(called, (successes.get(called) ?? 0) + 1);
      if (status === 204 && req.snapshotDir !== undefined) snapshots.push(req.snapshotDir);
      if (status === 500) {
        // Allowed only as the VMM's own report of a failed operation (a snapshot it could not
        // read or write), never an unexpected exception.
        const code = (JSON.parse(parseRawResponse(text).body) as { error: { code: string } }).error.code;
        expect(code, text).not.toBe('EINTERNAL');
        failures.push(code);
      }
      return status;
    };

    /** Pause (if needed), then a snapshot with conflicting requests fired while it runs. */
    const conflictBurst = async (k: number): Promise<void> => {
      const pause: Req = { data: request('PUT', '/api/v1/vm.pause'), halfClose: false };
      await send(pause, `burst ${k} pause`);
      const dir = join(v.dir, `fuzz-burst-${k}`);
      const snapshot: Req = { data: request('PUT', '/api/v1/vm.snapshot', JSON.stringify({ destination_url: pathToFileURL(dir).href })), halfClose: false };
      const rivals = ['vm.pause', 'vm.resume', 'vm.reboot', 'vm.boot', 'vm.snapshot'].map((route): Req => ({
        data: request('PUT', `/api/v1/${route}`, route === 'vm.snapshot' ? JSON.stringify({ destination_url: pathToFileURL(`${dir}-rival`).href }) : ''),
        halfClose: false,
      }));
      const first = send(snapshot, `burst ${k} snapshot`);
      await sleep(1);
      const results = await Promise.all([first, ...rivals.map((r, i) => send(r, `burst ${k} rival ${i}`))]);
      conflicts += results.slice(1).filter((s) => s === 409).length;
    };

    // Requests are drawn from the seeded generator in order, when a worker is ready for one, so a
    // restore can name a snapshot that an earlier request really made.
    let next = 0;
    const workers = Array.from({ length: WORKERS }, async (_, w) => {
      for (;;) {
        const i = next++;
        if (i >= REQUESTS) return;
        const req = makeRequest(rand, v.dir, snapshots, i, replay(events));
        if (w === 0 && i % 60 === 0) await conflictBurst(i);
        await send(req, `request ${i}`);
      }
    });
    await Promise.all(workers);

    // Every assertion below names what the run did, so a failure nested in CI can be read.
    const summary = JSON.stringify({ statuses: [...statuses], successes: [...successes], unanswered, conflicts, failures });
    // Nearly every request got an answer; the rest were cut short by the client itself.
    expect(unanswered, summary).toBeLessThan(REQUESTS / 4);
    for (const s of [204, 400, 404, 405, 409, 413]) expect(statuses.get(s) ?? 0, `status ${s}: ${summary}`).toBeGreaterThan(0);
    expect(conflicts, `pause/resume/reboot/boot during a snapshot are refused with 409: ${summary}`).toBeGreaterThan(0);
    // The only 500s are failed snapshot reads/writes (bad paths the fuzz chose), reported as such.
    for (const code of failures) expect(code, summary).toMatch(/^ESNAPSHOT|^EIO|^ECONFIG/);

    // The stalled clients were cut off by the server's header timeout, with a 408.
    for (const s of await Promise.all(stalled)) {
      expect(parseRawResponse(s.answer).status).toBe(408);
      expect(s.ms).toBeLessThan(deadline(30_000));
    }

    // The VMM answers, and its state is the one the successful requests imply.
    expect((await v.client.ping()).pid).toBe(v.pid);
    await sleep(200); // the last events may still be on the wire
    const seen = attemptEvents();
    const trace = `${summary}\nevents: ${seen.map((e) => e.event).join(' ')}`;
    for (const route of LIFECYCLE) {
      expect(seen.filter((e) => e.event === COMPLETION[route]).length, `${route}: one event per 204: ${trace}`).toBe(successes.get(route) ?? 0);
    }
    // Every begun operation finished (no "pausing" without "paused" and so on).
    const begun = (a: string, b: string) => [seen.filter((e) => e.event === a).length, seen.filter((e) => e.event === b).length];
    for (const [a, b] of [['pausing', 'paused'], ['resuming', 'resumed'], ['rebooting', 'rebooted']] as const) {
      const [x, y] = begun(a, b);
      expect(x, `${a} vs ${b}: ${trace}`).toBe(y);
    }
    const state = await v.state();
    expect(state, trace).toBe(replay(events));
    expect(successes.get('vm.pause') ?? 0, trace).toBeGreaterThan(0);
    expect(successes.get('vm.resume') ?? 0, trace).toBeGreaterThan(0);

    // And the guest still ticks: bring it back to Running whatever the fuzz left it in.
    if (state === 'Paused') await v.client.resume();
    if (state === 'Shutdown') await v.client.boot();
    const ticks = await tap.moreTicks(3);
    expect(ticks[1]!.n).toBe(ticks[0]!.n + 1);
    expect(ticks[2]!.n).toBe(ticks[1]!.n + 1);
    expect(v.exited).toBe(false);
  });
});

// Say why, loudly (stderr banner and a named skipped test), when the real VMM cannot run here.
