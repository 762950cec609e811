import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { ApiClient } from '../../../src/vmm/api/client.js';
import type { VmmEvent } from '../../../src/vmm/controller.js';
import { raw, rawExchange, parseRawResponse } from './helpers.js';

/**
 * Black-box route tests: HTTP over the Unix socket only, no access to the VMM behind it. They run
 * here against the test double (server.test.ts) and are meant to run unchanged against a real
 * tsvmm with a booted guest: `setup` must return a server whose VM is Running, with serial mode
 * Socket, plus a scratch directory for snapshots.
 */
export interface ContractTarget {
  socketPath: string;
  scratchDir: string;
  /** Stops the server/VMM if still running and cleans up. */
  stop(): Promise<void>;
}

interface ErrorBody {
  error: { code: string; message: string };
}

export function defineRouteContract(name: string, setup: () => Promise<ContractTarget>): void {
  describe(`API route contract (${name})`, () => {
    let target: ContractTarget | undefined;
    let client: ApiClient;
    beforeEach(async () => {
      target = undefined;
      target = await setup();
      client = new ApiClient(target.socketPath);
    });
    afterEach(async () => {
      await target?.stop();
    });
    const t = {
      get socketPath(): string {
        if (target === undefined) throw new Error('no target: setup failed');
        return target.socketPath;
      },
      get scratchDir(): string {
        if (target === undefined) throw new Error('no target: setup failed');
        return target.scratchDir;
      },
    };
    const put = (path: string, body?: string) => raw(t.socketPath, 'PUT', `/api/v1/${path}`, body);
    const get = (path: string) => raw(t.socketPath, 'GET', `/api/v1/${path}`);
    const errorCode = (r: { body: string }) => (JSON.parse(r.body) as ErrorBody).error.code;
    const state = async () => (await client.info()).state;

    test('GET routes answer 200 with JSON of the documented shape', async () => {
      const ping = await get('vmm.ping');
      expect(ping.status).toBe(200);
      expect(JSON.parse(ping.body)).toEqual({
        build_version: expect.any(String), version: expect.any(String), pid: expect.any(Number), features: expect.any(Array),
      });
      const info = JSON.parse((await get('vm.info')).body);
      expect(info).toMatchObject({ state: 'Running', memory_actual_size: expect.any(Number), config: { cpus: { boot_vcpus: expect.any(Number) } } });
      const counters = JSON.parse((await get('vm.counters')).body) as Record<string, Record<string, unknown>>;
      for (const group of Object.values(counters)) for (const v of Object.values(group)) expect(typeof v).toBe('number');
    });

    test('pause, snapshot, resume, reboot, shutdown, boot, with 400 where the state forbids it', async () => {
      const snapshotRunning = await put('vm.snapshot', JSON.stringify({ destination_url: pathToFileURL(join(t.scratchDir, 'early')).href }));
      expect(snapshotRunning.status).toBe(400);
      expect(errorCode(snapshotRunning)).toBe('EINVALIDSTATE');
      expect((await put('vm.resume')).status).toBe(400);
      expect((await put('vm.pause')).status).toBe(204);
      expect(await state()).toBe('Paused');
      expect((await put('vm.pause')).status).toBe(400);
      const snap = await put('vm.snapshot', JSON.stringify({ destination_url: pathToFileURL(join(t.scratchDir, 'snap')).href }));
      expect(snap.status, snap.body).toBe(204);
      expect((await put('vm.resume')).status).toBe(204);
      expect(await state()).toBe('Running');
      expect((await put('vm.reboot')).status).toBe(204);
      expect((await put('vm.shutdown')).status).toBe(204);
      expect(await state()).toBe('Shutdown');
      expect((await put('vm.boot')).status).toBe(204);
      expect(await state()).toBe('Running');
      const again = await put('vm.create', JSON.stringify({ payload: { kernel: '/k' } }));
      expect(again.status).toBe(400);
      expect(errorCode(again)).toBe('EINVALIDSTATE');
    });

    test('events stream lifecycle changes in order', async () => {
      const seen: VmmEvent[] = [];
      const ws = await client.events((e) => seen.push(e));
      await client.pause();
      await client.resume();
      await expect.poll(() => seen.map((e) => e.event)).toEqual(['pausing', 'paused', 'resuming', 'resumed']);
      ws.close();
    });

    test('console attaches once at a time and detaches without disturbing the guest', async () => {
      const ws = await client.openWebSocket('vm.console');
      await expect(client.openWebSocket('vm.console')).rejects.toMatchObject({ status: 409 });
      ws.send(Buffer.from('\r'));
      ws.close();
      await new Promise((r) => ws.once('close', r));
      await expect.poll(async () => {
        try {
          (await client.openWebSocket('vm.console')).close();
          return true;
        } catch {
          return false;
        }
      }).toBe(true);
      expect(await state()).toBe('Running');
    });

    test('protocol errors: 404, 405 + Allow, 400 bad JSON / unknown field, 413, 426', async () => {
      expect((await get('vm.nope')).status).toBe(404);
      const m = await get('vm.pause');
      expect([m.status, m.headers.allow]).toEqual([405, 'PUT']);
      expect((await put('vm.snapshot', '{')).status).toBe(400);
      const unknown = await put('vm.snapshot', '{"destination_url":"file:///x","compress":true}');
      expect([unknown.status, (JSON.parse(unknown.body) as ErrorBody).error.message]).toEqual([400, expect.stringMatching(/unknown field "compress"/)]);
      const big = parseRawResponse(await rawExchange(t.socketPath, 'PUT /api/v1/vm.create HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n'));
      expect(big.status).toBe(413);
      expect((await get('vmm.events')).status).toBe(426);
      expect(await state()).toBe('Running');
    });

    test('vmm.shutdown answers 204, then the socket goes away', async () => {
      expect((await put('vmm.shutdown')).status).toBe(204);
      await expect.poll(() => existsSync(t.socketPath), { timeout: 10_000 }).toBe(false);
    });
  });
}
