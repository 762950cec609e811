import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApiServer, type ApiServer, type ApiServerOptions } from '../../../src/vmm/api/server.js';
import { FakeVmm } from './fake-vmm.js';

export interface Harness {
  dir: string;
  socketPath: string;
  vmm: FakeVmm;
  server: ApiServer;
  logs: string[];
  stop(): Promise<void>;
}

/** A FakeVmm behind a real API server on a fresh socket in a fresh temp directory. */
export async function startHarness(options: Partial<ApiServerOptions> = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-api-'));
  const socketPath = join(dir, 'api.sock');
  const vmm = new FakeVmm();
  const logs: string[] = [];
  const server = await startApiServer({ listen: { path: socketPath }, controller: vmm, log: (l) => logs.push(l), ...options });
  return {
    dir, socketPath, vmm, server, logs,
    async stop() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  raw: string;
}

export function parseRawResponse(raw: string): RawResponse {
  const end = raw.indexOf('\r\n\r\n');
  const head = end < 0 ? raw : raw.slice(0, end);
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: end < 0 ? '' : raw.slice(end + 4), raw };
}

/** Writes `data` as-is on a fresh connection and returns everything read until the server closes. */
export function rawExchange(socketPath: string, data: string | Buffer, opts: { halfClose?: boolean; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no close from server within ${opts.timeoutMs ?? 5000} ms; got ${Buffer.concat(chunks).toString()}`));
    }, opts.timeoutMs ?? 5000);
    s.on('data', (c) => chunks.push(c));
    s.on('error', () => {}); // a reset after the answer still leaves the answer in `chunks`
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    s.write(data);
    if (opts.halfClose === true) s.end();
  });
}

/** One HTTP/1.1 request with `Connection: close`, as curl --unix-socket would send it. */
export async function raw(socketPath: string, method: string, path: string, body?: string, extraHeaders: string[] = []): Promise<RawResponse> {
  const headers = ['Host: localhost', 'User-Agent: curl/7.88.1', 'Accept: */*', 'Connection: close', ...extraHeaders];
  if (body !== undefined) headers.push('Content-Type: application/x-www-form-urlencoded', `Content-Length: ${Buffer.byteLength(body)}`);
  const text = await rawExchange(socketPath, `${method} ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n${body ?? ''}`);
  return parseRawResponse(text);
}

export const TINY_CONFIG = {
  cpus: { boot_vcpus: 1, max_vcpus: 1 },
  memory: { size: 64 * 1024 * 1024 },
  payload: { kernel: '/images/tiny.elf', cmdline: 'tiny.ticks' },
  serial: { mode: 'Socket' },
};
