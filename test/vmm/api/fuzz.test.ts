import { expect, test } from 'vitest';
import { ApiClient } from '../../../src/vmm/api/client.js';
import { CHECKPOINT_ROUTES } from '../../../src/vmm/api/checkpoint-routes.js';
import { ROUTES } from '../../../src/vmm/api/routes.js';
import type { VmState } from '../../../src/vmm/config.js';
import { parseRawResponse, rawExchange, startHarness, TINY_CONFIG } from './helpers.js';
import { prng } from '../../support/prng.js';


const SEED = 0x7e57c0de;
const REQUESTS = 400;
const ALLOWED_STATUSES = new Set([200, 204, 400, 404, 405, 408, 409, 413, 426, 431, 500]);

function makeRequest(rand: () => number): { data: Buffer; halfClose: boolean } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
  const kind = rand();
  if (kind < 0.08) return { data: bytes(1 + Math.floor(rand() * 300)), halfClose: true }; // pure garbage
  // vmm.shutdown would end the server under test; everything else is fair game. The disk-snapshot
  // routes are left out (the test double has no disks; their bodies are fuzzed in
  // test/vmm/checkpoints/api-bodies.test.ts), so the lifecycle keeps the same seeded sequence.
  const routes = ROUTES.filter((r) => r.name !== 'vmm.shutdown' && !CHECKPOINT_ROUTES.includes(r));
  const route = pick(routes);
  // Half the requests are well-formed calls of a real route, so the VM really moves through its
  // lifecycle while the other half throws junk at it.
  if (kind < 0.5) {
    const body = route.kind === 'action' && route.parseBody !== undefined
      ? pick([JSON.stringify(TINY_CONFIG), JSON.stringify({ ...TINY_CONFIG, serial: { mode: 'Null' } }),
        '{"destination_url":"file:///tmp/fuzz-snap"}', '{"source_url":"file:///tmp/fuzz-snap"}'])
      : '';
    const head = `${route.method} /api/v1/${route.name} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n`;
    return { data: Buffer.from(head + body), halfClose: rand() < 0.5 };
  }
  const method = pick(['GET', 'PUT', 'PUT', 'PUT', 'POST', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'G\u0001T', 'PUTT']);
  const path = pick([
    `/api/v1/${route.name}`,
    `/api/v1/${route.name}`,
    '/', '/api/v1', '/api/v1/vm.%00info', `/api/v1/${'a'.repeat(3000)}`, '/api/v1/vm.info?x=%zz', '*', '/../../etc/passwd',
  ]);
  const bodies: Array<() => string | Buffer> = [
    () => '',
    () => JSON.stringify(TINY_CONFIG),
    () => JSON.stringify({ ...TINY_CONFIG, serial: { mode: pick(['Null', 'Socket', 'Nope', 7]) } }),
    () => '{"destination_url":"file:///tmp/fuzz-snap"}',
    () => '{"source_url":"file:///tmp/fuzz-snap","prefault":true}',
    () => JSON.stringify(TINY_CONFIG).slice(0, Math.floor(rand() * 80)),
    () => JSON.stringify(pick([null, 1, 'x', [], {}, { cpus: [] }, { payload: { kernel: {} } }, { disks: [{ path: 3 }] }])),
    () => {
      const b = Buffer.from(JSON.stringify(TINY_CONFIG));
      for (let i = 0; i < 3; i++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      return b;
    },
    () => bytes(Math.floor(rand() * 200)),
    () => '{"a":'.repeat(2000),
  ];
  const body = pick(bodies)();
  const bodyLength = Buffer.byteLength(body);
  const headers = ['Host: localhost', 'Connection: close'];
  const truncate = rand() < 0.15;
  if (rand() < 0.85) headers.push(`Content-Length: ${truncate ? bodyLength + 1 + Math.floor(rand() * 100) : bodyLength}`);
  if (rand() < 0.3) headers.push(`Content-Type: ${pick(['application/json', 'application/x-www-form-urlencoded', 'text/plain', ''])}`);
  if (rand() < 0.08) headers.push('Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==');
  if (rand() < 0.05) headers.push('Transfer-Encoding: chunked');
  let data = Buffer.concat([Buffer.from(`${method} ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`), Buffer.from(body)]);
  if (rand() < 0.1) data = data.subarray(0, Math.floor(rand() * data.length)); // cut anywhere
  return { data, halfClose: truncate || rand() < 0.5 };
}

/** The lifecycle the events describe, replayed: it must end where the double says it is. */
function replay(events: readonly { event: string }[]): VmState | undefined {
  const next: Record<string, VmState | undefined> = { created: 'Created', booted: 'Running', paused: 'Paused', resumed: 'Running', shutdown: 'Shutdown', restored: 'Paused', deleted: undefined };
  let state: VmState | undefined;
  for (const e of events) state = e.event in next ? next[e.event] : state;
  return state;
}

test(`fuzz: ${REQUESTS} random requests (seed ${SEED.toString(16)}) leave the server serving and the VM consistent`, async () => {
  const h = await startHarness({ headersTimeoutMs: 300, requestTimeoutMs: 600 });
  try {
    const rand = prng(SEED);
    const statuses = new Map<number, number>();
    let unanswered = 0;
    const requests = Array.from({ length: REQUESTS }, () => makeRequest(rand));
    const workers = Array.from({ length: 8 }, async (_, w) => {
      for (let i = w; i < requests.length; i += 8) {
        const req = requests[i];
        if (req === undefined) continue;
        const text = await rawExchange(h.socketPath, req.data, { halfClose: req.halfClose, timeoutMs: 5000 });
        if (text === '') {
          unanswered++;
          continue;
        }
        const { status } = parseRawResponse(text);
        expect(ALLOWED_STATUSES.has(status), `request ${i} got "${text.slice(0, 80)}"`).toBe(true);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    });
    await Promise.all(workers);
    // Most requests get an answer; the rest are cut short by the client itself.
    expect(unanswered).toBeLessThan(REQUESTS / 4);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(20);
    expect(statuses.get(204) ?? 0).toBeGreaterThan(10);
    expect(h.vmm.events.length).toBeGreaterThan(10);

    const client = new ApiClient(h.socketPath);
    expect((await client.ping()).pid).toBe(process.pid);
    expect(h.vmm.maxConcurrentOps).toBeLessThanOrEqual(1);
    expect(replay(h.vmm.events)).toBe(h.vmm.state);
    if (h.vmm.state !== undefined) expect((await client.info()).state).toBe(h.vmm.state);
    await expect.poll(() => [h.vmm.subscriberCount, h.vmm.consoleIsAttached]).toEqual([0, false]);
    // Nothing the clients did reached the log: no 500s from the server's own code.
    expect(h.logs).toEqual([]);
  } finally {
    await h.stop();
  }
});
