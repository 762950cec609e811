import { afterEach, beforeEach, expect, test } from 'vitest';
import type { WebSocket } from 'ws';
import { ApiClient } from '../../../src/vmm/api/client.js';
import type { VmmEvent } from '../../../src/vmm/controller.js';
import { raw, startHarness, TINY_CONFIG, type Harness } from './helpers.js';

let h: Harness;
let client: ApiClient;
beforeEach(async () => {
  h = await startHarness();
  client = new ApiClient(h.socketPath);
});
afterEach(async () => {
  await h.stop();
});

const closed = (ws: WebSocket) => new Promise<number>((r) => ws.once('close', (code) => r(code)));

test('events arrive in order, one JSON message each, and unsubscribe on close', async () => {
  const seen: VmmEvent[] = [];
  const ws = await client.events((e) => seen.push(e));
  await expect.poll(() => h.vmm.subscriberCount).toBe(1);
  await client.create(TINY_CONFIG);
  await client.boot();
  await client.pause();
  for (let i = 0; i < 200; i++) h.vmm.emit('device', `tick${i}`);
  await client.resume();
  await expect.poll(() => seen.length).toBe(h.vmm.events.length);
  expect(seen).toEqual(h.vmm.events);
  expect(seen.slice(0, 5).map((e) => e.event)).toEqual(['created', 'booting', 'booted', 'pausing', 'paused']);
  ws.close();
  await closed(ws);
  await expect.poll(() => h.vmm.subscriberCount).toBe(0);
});

test('several event clients each get every event', async () => {
  const a: string[] = [];
  const b: string[] = [];
  const wa = await client.events((e) => a.push(e.event));
  const wb = await client.events((e) => b.push(e.event));
  await expect.poll(() => h.vmm.subscriberCount).toBe(2);
  h.vmm.emit('vmm', 'one');
  h.vmm.emit('vmm', 'two');
  await expect.poll(() => [a, b]).toEqual([['one', 'two'], ['one', 'two']]);
  wa.close();
  wb.close();
});

test('console: bytes round-trip; closing detaches without disturbing the guest', async () => {
  await client.create(TINY_CONFIG);
  await client.boot();
  const ws = await client.openWebSocket('vm.console');
  const out: Buffer[] = [];
  ws.on('message', (d: Buffer) => out.push(d));
  ws.send(Buffer.from([0x68, 0x69, 0x00, 0xff]));
  await expect.poll(() => Buffer.concat(out).toString('latin1')).toBe('echo:hi\u0000\u00ff');
  ws.send('text too');
  await expect.poll(() => Buffer.concat(out).toString('latin1')).toMatch(/echo:text too$/);
  expect(h.vmm.consoleIsAttached).toBe(true);
  ws.close();
  await closed(ws);
  await expect.poll(() => h.vmm.consoleIsAttached).toBe(false);
  expect(h.vmm.state).toBe('Running');
  // The console can be attached again afterwards.
  const again = await client.openWebSocket('vm.console');
  again.close();
});

test('only one console client at a time: the second gets HTTP 409', async () => {
  await client.create(TINY_CONFIG);
  const first = await client.openWebSocket('vm.console');
  await expect(client.openWebSocket('vm.console')).rejects.toMatchObject({ status: 409, code: 'ECONFLICT' });
  first.terminate(); // an abrupt drop detaches too
  await expect.poll(() => h.vmm.consoleIsAttached).toBe(false);
});

test('console refusals carry the controller error status', async () => {
  await expect(client.openWebSocket('vm.console')).rejects.toMatchObject({ status: 404, code: 'ENOVM' });
  await client.create({ ...TINY_CONFIG, serial: { mode: 'Null' } });
  await expect(client.openWebSocket('vm.console')).rejects.toMatchObject({
    status: 400,
    code: 'EINVALIDSTATE',
    message: expect.stringMatching(/Null mode/),
  });
});

test('plain GET on a WebSocket endpoint is 426; upgrades elsewhere are refused', async () => {
  const r = await raw(h.socketPath, 'GET', '/api/v1/vmm.events');
  expect(r.status).toBe(426);
  const upgrade = ['Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='];
  const noRoute = await raw(h.socketPath, 'GET', '/api/v1/nope', undefined, upgrade);
  expect(noRoute.status).toBe(404);
  const notWs = await raw(h.socketPath, 'GET', '/api/v1/vmm.ping', undefined, upgrade);
  expect(notWs.status).toBe(400);
  const noVm = await raw(h.socketPath, 'GET', '/api/v1/vm.console', undefined, upgrade.slice(0, 3));
  expect(noVm.status).toBe(404); // no VM yet: refused before the handshake
  await client.create(TINY_CONFIG);
  const badHandshake = await raw(h.socketPath, 'GET', '/api/v1/vm.console', undefined, [...upgrade.slice(0, 3), 'Sec-WebSocket-Key: short']);
  expect(badHandshake.status).toBe(400);
  await expect.poll(() => h.vmm.consoleIsAttached).toBe(false); // the failed handshake released it
});

test('closing the server closes WebSocket clients with 1001', async () => {
  await client.create(TINY_CONFIG);
  const events = await client.events(() => {});
  const consoleWs = await client.openWebSocket('vm.console');
  const codes = Promise.all([closed(events), closed(consoleWs)]);
  await h.server.close();
  expect(await codes).toEqual([1001, 1001]);
  await expect.poll(() => [h.vmm.subscriberCount, h.vmm.consoleIsAttached]).toEqual([0, false]);
});

test('a console client that stops reading is disconnected (1013), not buffered without bound', async () => {
  await client.create(TINY_CONFIG);
  const ws = await client.openWebSocket('vm.console');
  const socket = (ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
  socket.pause();
  const code = closed(ws);
  const chunk = Buffer.alloc(64 * 1024, 0x41);
  for (let i = 0; i < 100; i++) ws.send(chunk);
  await expect.poll(() => h.vmm.consoleInput.length, { timeout: 10_000 }).toBe(100 * chunk.length);
  socket.resume();
  expect(await code).toBe(1013);
  await expect.poll(() => h.vmm.consoleIsAttached).toBe(false);
});
