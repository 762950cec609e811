import { request } from 'node:http';
import { WebSocket } from 'ws';
import type { ErrorCode } from '../../error-codes.js';
import { TsvmmError } from '../../errors.js';
import type { VmCounters, VmInfo, VmmEvent } from '../controller.js';
import type { ResizeDiskRequest, RestoreRequest } from '../requests.js';
import { API_BASE } from './routes.js';

/**
 * HTTP-over-Unix-socket client for the tsvmm API (what `curl --unix-socket` does), used by
 * tsvmm-remote, the tests and the benchmarks. One connection per request: control-plane traffic
 * is rare and a fresh connection can never inherit a broken keep-alive state.
 */

/** The server answered with an error status; `code`/`message` come from its JSON error body. */
export class ApiRequestError extends TsvmmError {
  readonly status: number;
  constructor(status: number, code: string, message: string) {
    // The VMM's code, relayed as it sent it (the VMM throws only codes of the table).
    super(code as ErrorCode, message, { status });
    this.status = status;
  }
}

/** Nothing answers on the socket (no such file, refused, permission denied, timed out). */
export class ApiConnectError extends TsvmmError {
  constructor(socketPath: string, cause: string, errno?: string) {
    const hint = errno === 'EACCES'
      ? 'the socket is accessible only to the user running tsvmm'
      : errno === 'ETIMEDOUT'
        ? 'the VMM is busy or hung'
        : `is tsvmm running with --api-socket ${socketPath}?`;
    super('ECONNECT', `cannot reach the tsvmm API at ${socketPath}: ${cause} (${hint})`);
  }
}

export interface ApiResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export interface PingInfo {
  build_version: string;
  version: string;
  pid: number;
  features: string[];
}

const CONNECT_ERRORS = new Set(['ENOENT', 'ECONNREFUSED', 'EACCES', 'ENOTSOCK', 'ECONNRESET', 'EPIPE']);

function errorFrom(status: number, body: string): ApiRequestError {
  try {
    const e = (JSON.parse(body) as { error?: { code?: unknown; message?: unknown } }).error;
    if (e !== undefined && typeof e.code === 'string' && typeof e.message === 'string') {
      return new ApiRequestError(status, e.code, e.message);
    }
  } catch {
    // not one of ours: fall through to the raw text
  }
  return new ApiRequestError(status, 'EHTTP', `HTTP ${status}${body.length > 0 ? `: ${body.slice(0, 200)}` : ''}`);
}

export class ApiClient {
  /** `timeoutMs`: give up on a silent server after this long (a large snapshot can take a while). */
  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 300_000,
  ) {}

  /** One raw request; `body` objects are sent as JSON. Never throws for HTTP error statuses. */
  request(method: string, path: string, body?: unknown): Promise<ApiResponse> {
    const payload = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = { Accept: 'application/json' };
      if (payload !== undefined) {
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = Buffer.byteLength(payload);
      }
      const req = request({ socketPath: this.socketPath, method, path, headers, agent: false, timeout: this.timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new ApiConnectError(this.socketPath, `no answer within ${this.timeoutMs} ms`, 'ETIMEDOUT')));
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err instanceof TsvmmError) reject(err);
        else if (err.code !== undefined && CONNECT_ERRORS.has(err.code)) reject(new ApiConnectError(this.socketPath, err.message, err.code));
        else reject(err);
      });
      req.end(payload);
    });
  }

  /** A request that must succeed: returns the parsed 200 body (undefined for 204), else throws ApiRequestError. */
  async call(method: 'GET' | 'PUT', endpoint: string, body?: unknown): Promise<unknown> {
    const res = await this.request(method, `${API_BASE}/${endpoint}`, body);
    if (res.status === 204) return undefined;
    if (res.status === 200) return res.body.length > 0 ? (JSON.parse(res.body) as unknown) : undefined;
    throw errorFrom(res.status, res.body);
  }

  ping(): Promise<PingInfo> {
    return this.call('GET', 'vmm.ping') as Promise<PingInfo>;
  }
  info(): Promise<VmInfo> {
    return this.call('GET', 'vm.info') as Promise<VmInfo>;
  }
  counters(): Promise<VmCounters> {
    return this.call('GET', 'vm.counters') as Promise<VmCounters>;
  }
  /** `config` is sent as given (a parsed vm.create JSON file); the server validates it. */
  async create(config: unknown): Promise<void> {
    await this.call('PUT', 'vm.create', config);
  }
  async boot(): Promise<void> {
    await this.call('PUT', 'vm.boot');
  }
  async pause(): Promise<void> {
    await this.call('PUT', 'vm.pause');
  }
  async resume(): Promise<void> {
    await this.call('PUT', 'vm.resume');
  }
  async shutdown(): Promise<void> {
    await this.call('PUT', 'vm.shutdown');
  }
  async delete(): Promise<void> {
    await this.call('PUT', 'vm.delete');
  }
  async reboot(): Promise<void> {
    await this.call('PUT', 'vm.reboot');
  }
  async snapshot(destinationUrl: string): Promise<void> {
    await this.call('PUT', 'vm.snapshot', { destination_url: destinationUrl });
  }
  async restore(req: RestoreRequest): Promise<void> {
    await this.call('PUT', 'vm.restore', req);
  }
  async resizeDisk(req: ResizeDiskRequest): Promise<void> {
    await this.call('PUT', 'vm.resize-disk', req);
  }
  async shutdownVmm(): Promise<void> {
    await this.call('PUT', 'vmm.shutdown');
  }

  /** Opens a WebSocket endpoint; rejects with ApiRequestError when the server refuses the upgrade. */
  openWebSocket(endpoint: 'vmm.events' | 'vm.console', query = ''): Promise<WebSocket> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws+unix://${this.socketPath}:${API_BASE}/${endpoint}${query}`, { perMessageDeflate: false });
      ws.once('open', () => {
        ws.removeAllListeners('error');
        ws.on('error', () => {}); // later errors surface as 'close'; callers listen there
        resolve(ws);
      });
      ws.once('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => reject(errorFrom(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'))));
        res.on('error', reject);
      });
      ws.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code !== undefined && CONNECT_ERRORS.has(err.code)) reject(new ApiConnectError(this.socketPath, err.message, err.code));
        else reject(err);
      });
    });
  }

  /** Subscribes to VMM events; `onEvent` is called in order. Resolves once connected. */
  async events(onEvent: (e: VmmEvent) => void): Promise<WebSocket> {
    const ws = await this.openWebSocket('vmm.events');
    ws.on('message', (data) => {
      let event: VmmEvent;
      try {
        event = JSON.parse(data.toString()) as VmmEvent;
      } catch {
        ws.close(1007, 'event is not valid JSON'); // 1007: invalid frame payload data
        return;
      }
      onEvent(event);
    });
    return ws;
  }
}
