import { execFile, spawnSync } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { ApiClient } from '../../../src/vmm/api/client.js';
import { startApiServer } from '../../../src/vmm/api/server.js';
import { parseVmConfigJson } from '../../../src/vmm/api/validate.js';
import { FakeVmm } from './fake-vmm.js';
import { defineRouteContract } from './route-contract.js';
import { parseRawResponse, raw, rawExchange, startHarness, TINY_CONFIG, type Harness } from './helpers.js';

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.stop();
});

const put = (path: string, body?: string) => raw(h.socketPath, 'PUT', `/api/v1/${path}`, body);
const get = (path: string) => raw(h.socketPath, 'GET', `/api/v1/${path}`);
const errorOf = (r: { body: string }) => (JSON.parse(r.body) as { error: { code: string; message: string } }).error;

describe('socket file', () => {
  test('is mode 0600 and removed on close', async () => {
    expect(statSync(h.socketPath).mode & 0o777).toBe(0o600);
    await h.server.close();
    expect(existsSync(h.socketPath)).toBe(false);
    await h.server.close(); // idempotent
  });

  test('a stale socket (nobody listening) is replaced', async () => {
    const path = join(h.dir, 'stale.sock');
    // A crashed VMM: a process that listened and was killed, leaving its socket file behind.
    const crash = `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`;
    spawnSync(process.execPath, ['-e', crash]);
    expect(statSync(path).isSocket()).toBe(true);
    const server = await startApiServer({ listen: { path }, controller: new FakeVmm() });
    expect((await new ApiClient(path).ping()).version).toBe('0.1.0');
    await server.close();
  });

  test('refuses a path another live server answers on, naming its pid', async () => {
    await expect(startApiServer({ listen: { path: h.socketPath }, controller: new FakeVmm() })).rejects.toThrow(
      new RegExp(`another tsvmm \\(pid ${process.pid}\\) is serving ${h.socketPath}`),
    );
    // ...and the first server is still fine.
    expect((await get('vmm.ping')).status).toBe(200);
  });

  test('a path that cannot be listened on is a clear error', async () => {
    const path = join(h.dir, 'no-such-dir', 'api.sock');
    await expect(startApiServer({ listen: { path }, controller: new FakeVmm() })).rejects.toThrow(
      `cannot create API socket ${path}: directory ${join(h.dir, 'no-such-dir')} does not exist`,
    );
    const tooLong = join(h.dir, `${'x'.repeat(120)}.sock`); // sun_path holds 108 bytes
    await expect(startApiServer({ listen: { path: tooLong }, controller: new FakeVmm() })).rejects.toThrow(/^API socket path is \d+ bytes; Unix socket paths are limited to 107: choose a shorter path$/);
    expect(existsSync(tooLong.slice(0, 107))).toBe(false);
  });

  test('refuses to replace a file that is not a socket', async () => {
    const path = join(h.dir, 'precious.txt');
    writeFileSync(path, 'keep me');
    await expect(startApiServer({ listen: { path }, controller: new FakeVmm() })).rejects.toMatchObject({ code: 'EAPISOCKET' });
    expect(existsSync(path)).toBe(true);
  });
});

describe('routes', () => {
  test('vmm.ping answers 200 with build_version, version, pid, features', async () => {
    const r = await get('vmm.ping');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/json');
    expect(JSON.parse(r.body)).toEqual({ build_version: 'test-double', version: '0.1.0', pid: process.pid, features: ['fake'] });
  });

  test('vm.info and vm.counters are 404 ENOVM before vm.create', async () => {
    for (const path of ['vm.info', 'vm.counters']) {
      const r = await get(path);
      expect(r.status).toBe(404);
      expect(errorOf(r).code).toBe('ENOVM');
      expect(errorOf(r).message).toMatch(/vm.create/);
    }
    expect((await put('vm.boot')).status).toBe(404);
  });

  test('the whole lifecycle: create, boot, pause, snapshot, resume, reboot, shutdown, boot', async () => {
    expect((await put('vm.create', JSON.stringify(TINY_CONFIG))).status).toBe(204);
    const info = JSON.parse((await get('vm.info')).body);
    expect(info.state).toBe('Created');
    expect(info.config.disks).toEqual([]);
    expect(info.config.payload.kernel).toBe('/images/tiny.elf');
    const steps: Array<[string, string | undefined, string]> = [
      ['vm.boot', undefined, 'Running'],
      ['vm.pause', undefined, 'Paused'],
      ['vm.snapshot', '{"destination_url":"file:///tmp/snap"}', 'Paused'],
      ['vm.resume', undefined, 'Running'],
      ['vm.reboot', undefined, 'Running'],
      ['vm.shutdown', undefined, 'Shutdown'],
      ['vm.boot', undefined, 'Running'],
    ];
    for (const [path, body, state] of steps) {
      const r = await put(path, body);
      expect(r.status, `${path}: ${r.body}`).toBe(204);
      expect(r.body).toBe('');
      expect(h.vmm.state).toBe(state);
    }
    expect(h.vmm.snapshots).toEqual([{ destination_url: 'file:///tmp/snap' }]);
    // A live snapshot of the running VM answers 200 with its report; the VM stays Running.
    const live = await put('vm.snapshot', '{"destination_url":"file:///tmp/live","live":true}');
    expect(live.status, live.body).toBe(200);
    expect(JSON.parse(live.body)).toMatchObject({ live: true, destination: '/tmp/live', pause_ms: 1.5, converged: true });
    expect(h.vmm.state).toBe('Running');
    const counters = await get('vm.counters');
    expect(counters.status).toBe(200);
    expect(JSON.parse(counters.body).vcpu0.io).toBe(3);
    // vm.delete shuts the running VM down and forgets it; deleting nothing is fine too.
    for (let i = 0; i < 2; i++) expect((await put('vm.delete')).status).toBe(204);
    expect((await get('vm.info')).status).toBe(404);
    expect(h.vmm.events.map((e) => e.event).slice(-2)).toEqual(['shutdown', 'deleted']);
    expect((await put('vm.create', JSON.stringify(TINY_CONFIG))).status).toBe(204);
  });

  test('vm.restore creates a paused VM from a snapshot URL', async () => {
    h.vmm.snapshots.push({ destination_url: 'file:///snaps/a' });
    expect((await put('vm.restore', '{"source_url":"file:///snaps/a","prefault":true}')).status).toBe(204);
    expect(h.vmm.state).toBe('Paused');
    const again = await put('vm.restore', '{"source_url":"file:///snaps/a"}');
    expect(again.status).toBe(400);
    expect(errorOf(again).code).toBe('EINVALIDSTATE');
  });

  test('vmm.shutdown answers 204, then removes the socket and stops the VMM', async () => {
    await put('vm.create', JSON.stringify(TINY_CONFIG));
    const r = await put('vmm.shutdown');
    expect(r.status).toBe(204);
    await expect.poll(() => h.vmm.shutdownVmmCalls).toBe(1);
    expect(existsSync(h.socketPath)).toBe(false);
  });

  test('query strings are ignored; absolute-form request targets work', async () => {
    expect((await raw(h.socketPath, 'GET', '/api/v1/vmm.ping?verbose=1')).status).toBe(200);
    expect((await raw(h.socketPath, 'GET', 'http://localhost/api/v1/vmm.ping')).status).toBe(200);
  });
});

describe('errors', () => {
  test('unknown routes are 404 ENOROUTE', async () => {
    for (const path of ['/api/v1/vm.nope', '/api/v1/', '/', '/api/v2/vmm.ping', '/api/v1/vmm.ping/']) {
      const r = await raw(h.socketPath, 'GET', path);
      expect(r.status, path).toBe(404);
      expect(errorOf(r).code).toBe('ENOROUTE');
    }
  });

  test('a wrong method is 405 with an Allow header', async () => {
    const a = await put('vm.info');
    expect(a.status).toBe(405);
    expect(a.headers.allow).toBe('GET');
    const b = await get('vm.pause');
    expect(b.status).toBe(405);
    expect(b.headers.allow).toBe('PUT');
    expect(errorOf(b).message).toBe('GET is not allowed on /api/v1/vm.pause; use PUT');
    expect((await raw(h.socketPath, 'DELETE', '/api/v1/vm.boot')).status).toBe(405);
  });

  test('a request invalid in this state is 400 EINVALIDSTATE with an actionable message', async () => {
    await put('vm.create', JSON.stringify(TINY_CONFIG));
    const r = await put('vm.pause');
    expect(r.status).toBe(400);
    expect(errorOf(r)).toEqual({ code: 'EINVALIDSTATE', message: 'cannot pause a VM that is Created (needs Running)' });
  });

  test('bad bodies are 400 and say what is wrong', async () => {
    const cases: Array<[string, string | undefined, RegExp]> = [
      ['vm.create', '{"cpus": ', /not valid JSON/],
      ['vm.create', undefined, /vm.create needs a JSON request body/],
      ['vm.create', '[]', /body: expected a JSON object, got an array/],
      ['vm.create', JSON.stringify({ ...TINY_CONFIG, balloon: {} }), /^balloon: {} is not supported: tsvmm has no balloon device yet$/],
      ['vm.create', JSON.stringify({ ...TINY_CONFIG, ballon: null }), /unknown field "ballon"/],
      ['vm.create', JSON.stringify({ ...TINY_CONFIG, cpus: { boot_vcpus: '2' } }), /cpus.boot_vcpus: expected an integer, got string "2"/],
      ['vm.create', JSON.stringify({ ...TINY_CONFIG, disks: [{ path: '/a', readonly: 'yes' }] }), /disks\[0\].readonly: expected a boolean/],
      ['vm.snapshot', '{"destination_url":"http://x/y"}', /scheme "http" is not supported/],
      ['vm.snapshot', '{"destination":"file:///x"}', /unknown field "destination"/],
      ['vm.restore', '{"source_url":"file:///x","prefault":"on"}', /prefault: expected a boolean/],
      ['vm.pause', '{"now":true}', /vm.pause takes no request body/],
    ];
    for (const [path, body, message] of cases) {
      const r = await put(path, body);
      expect(r.status, `${path} ${body}`).toBe(400);
      expect(errorOf(r).message).toMatch(message);
    }
    expect(h.vmm.state).toBeUndefined();
  });

  test('bodies over the limit are 413, whether declared or streamed chunked', async () => {
    const declared = await raw(h.socketPath, 'PUT', '/api/v1/vm.create', undefined, ['Content-Length: 2000000']);
    expect(declared.status).toBe(413);
    expect(errorOf(declared).code).toBe('ETOOLARGE');
    const chunk = 'x'.repeat(64 * 1024);
    let body = '';
    for (let i = 0; i < 20; i++) body += `${chunk.length.toString(16)}\r\n${chunk}\r\n`;
    const text = await rawExchange(
      h.socketPath,
      `PUT /api/v1/vm.create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${body}0\r\n\r\n`,
    );
    expect(parseRawResponse(text).status).toBe(413);
    expect((await get('vmm.ping')).status).toBe(200);
  });

  test('a request that conflicts with one in progress gets 409 at once; shutdown waits its turn', async () => {
    await put('vm.create', JSON.stringify(TINY_CONFIG));
    await put('vm.boot');
    await put('vm.pause');
    h.vmm.delays.snapshot = 400;
    const started = Date.now();
    const snapshot = put('vm.snapshot', '{"destination_url":"file:///tmp/s"}');
    await new Promise((r) => setTimeout(r, 50));
    const resume = await put('vm.resume');
    expect(resume.status).toBe(409);
    expect(errorOf(resume)).toMatchObject({ code: 'ECONFLICT', message: expect.stringMatching(/vm.resume conflicts with vm.snapshot/) });
    expect(Date.now() - started).toBeLessThan(350);
    const shutdown = put('vm.shutdown');
    expect((await snapshot).status).toBe(204);
    expect((await shutdown).status).toBe(204);
    expect(h.vmm.state).toBe('Shutdown');
    expect(h.vmm.maxConcurrentOps).toBe(1);
  });

  test('a controller failure is 500 EINTERNAL and is logged; the server keeps serving', async () => {
    await put('vm.create', JSON.stringify(TINY_CONFIG));
    h.vmm.failNext = new Error('KVM_RUN exploded');
    const r = await put('vm.boot');
    expect(r.status).toBe(500);
    expect(errorOf(r)).toEqual({ code: 'EINTERNAL', message: 'internal error: KVM_RUN exploded' });
    expect(h.logs.join('\n')).toMatch(/KVM_RUN exploded/);
    expect((await put('vm.boot')).status).toBe(204);
  });

  test('malformed HTTP gets 400 and a closed connection', async () => {
    const text = await rawExchange(h.socketPath, 'THIS IS NOT HTTP\r\n\r\n');
    expect(parseRawResponse(text).status).toBe(400);
    const overflow = await rawExchange(h.socketPath, `GET /api/v1/vmm.ping HTTP/1.1\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`);
    expect(parseRawResponse(overflow).status).toBe(431);
  });
});

describe('connections', () => {
  test('keep-alive: several requests on one connection', async () => {
    const req = 'GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n\r\n';
    const text = await rawExchange(h.socketPath, `${req}${req}GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(text.match(/HTTP\/1.1 200 OK/g)).toHaveLength(3);
  });

  test('a client that half-closes after its request still gets the answer', async () => {
    const text = await rawExchange(h.socketPath, 'GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n\r\n', { halfClose: true });
    expect(parseRawResponse(text).status).toBe(200);
  });

  test('a client that half-closes after a slow request still gets its answer', async () => {
    expect((await put('vm.create', JSON.stringify(TINY_CONFIG))).status).toBe(204);
    h.vmm.delays.boot = 200;
    const text = await rawExchange(h.socketPath, 'PUT /api/v1/vm.boot HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n', { halfClose: true });
    expect(parseRawResponse(text).status).toBe(204);
    expect(h.vmm.state).toBe('Running');
  });

  test('a client that abandons its body mid-way does not disturb the server', async () => {
    await rawExchange(h.socketPath, 'PUT /api/v1/vm.create HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{"cpus"', { halfClose: true });
    expect((await get('vmm.ping')).status).toBe(200);
    expect(h.vmm.state).toBeUndefined();
  });
});

test('a slow client is timed out without blocking others', async () => {
  const slow = await startHarness({ headersTimeoutMs: 300, requestTimeoutMs: 600 });
  try {
    const s = connect(slow.socketPath);
    const received: Buffer[] = [];
    s.on('data', (c) => received.push(c));
    const closed = new Promise<number>((r) => s.on('close', () => r(Date.now())));
    const started = Date.now();
    for (const ch of 'GET /api/v1/vmm.ping HTTP/1.1\r\nHost: lo') {
      s.write(ch);
      await new Promise((r) => setTimeout(r, 5));
    }
    // ...and then it stops. Others are served meanwhile:
    const client = new ApiClient(slow.socketPath);
    const t0 = Date.now();
    expect((await client.ping()).pid).toBe(process.pid);
    expect(Date.now() - t0).toBeLessThan(200);
    const closedAt = await closed;
    expect(closedAt - started).toBeLessThan(2000);
    const answer = Buffer.concat(received).toString();
    expect(answer === '' || parseRawResponse(answer).status === 408).toBe(true);
  } finally {
    await slow.stop();
  }
});

test('real curl --unix-socket talks to the server', async (ctx) => {
  const run = promisify(execFile);
  try {
    await run('curl', ['--version']);
  } catch {
    ctx.skip('curl is not installed');
  }
  const base = ['-sS', '--unix-socket', h.socketPath, '-w', '\n%{http_code}'];
  const ping = await run('curl', [...base, 'http://localhost/api/v1/vmm.ping']);
  const [body, code] = ping.stdout.split('\n');
  expect(code).toBe('200');
  expect(JSON.parse(body ?? '').pid).toBe(process.pid);
  // curl -d sends application/x-www-form-urlencoded, as Cloud Hypervisor users do.
  const create = await run('curl', [...base, '-X', 'PUT', '-d', JSON.stringify(TINY_CONFIG), 'http://localhost/api/v1/vm.create']);
  expect(create.stdout.trim()).toBe('204');
  const boot = await run('curl', [...base, '-X', 'PUT', 'http://localhost/api/v1/vm.boot']);
  expect(boot.stdout.trim()).toBe('204');
  expect(h.vmm.state).toBe('Running');
});

test('64-bit counters given as bigints are sent as numbers, or strings beyond 2^53', async () => {
  await put('vm.create', JSON.stringify(TINY_CONFIG));
  h.vmm.counters = () => ({ vcpu0: { io: 5n as unknown as number, big: (2n ** 60n) as unknown as number } });
  const r = await get('vm.counters');
  expect(r.body).toBe('{"vcpu0":{"io":5,"big":"1152921504606846976"}}');
});

defineRouteContract('test double', async () => {
  const target = await startHarness();
  await target.vmm.create(parseVmConfigJson(TINY_CONFIG));
  await target.vmm.boot();
  return { socketPath: target.socketPath, scratchDir: target.dir, stop: () => target.stop() };
});

test('the client gives up on a server that does not answer, saying so', async () => {
  await put('vm.create', JSON.stringify(TINY_CONFIG));
  await put('vm.boot');
  await put('vm.pause');
  h.vmm.delays.snapshot = 500;
  const impatient = new ApiClient(h.socketPath, 100);
  await expect(impatient.snapshot('file:///tmp/slow')).rejects.toThrow(
    `cannot reach the tsvmm API at ${h.socketPath}: no answer within 100 ms (the VMM is busy or hung)`,
  );
  // The server finishes the operation even though its client left.
  await expect.poll(() => h.vmm.snapshots.length).toBe(1);
});
