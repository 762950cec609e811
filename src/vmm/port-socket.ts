/**
 * `--serial socket=PATH` and `--console socket=PATH` as Cloud Hypervisor has them: tsvmm listens
 * on a Unix socket at PATH and the client connected to it (`socat - UNIX-CONNECT:PATH`, `nc -U
 * PATH`, a script) is the port's other end: what the guest transmits goes to it, what it sends
 * is the guest's input.
 *
 * One client at a time, as on a real serial line: a second connection is told so and closed.
 * Output while no client is connected is dropped (a serial line with nothing plugged in), and so
 * is output a client does not read fast enough to keep its backlog under a bound: a stalled
 * reader must never make the VMM buffer without limit.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { unlinkSync } from 'node:fs';
import { log } from '../util/log.js';
import { claimSocketPath, type SocketRole } from './api/socket-file.js';

/** Bytes a client may have queued and unread before further output to it is dropped. */
const MAX_CLIENT_BACKLOG = 1024 * 1024;

export class PortSocket {
  private client: Socket | undefined;
  private dropping = false;

  private constructor(readonly path: string, private readonly what: string, private readonly server: Server, private readonly input: (bytes: Uint8Array) => void) {
    server.on('connection', (s) => this.accept(s));
    server.on('error', (e) => log.error(`${what} ${path}: ${e.message}`));
  }

  /**
   * Listens on `path` (a stale socket file there is replaced; a live one or a non-socket file is
   * refused with the role's error). `input` receives what the client sends.
   */
  static async listen(path: string, role: SocketRole, input: (bytes: Uint8Array) => void): Promise<PortSocket> {
    await claimSocketPath(path, role);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(role.error(`cannot listen on ${role.what} ${path}: ${e.message}`, path)));
      server.listen(path, () => resolve());
    });
    server.removeAllListeners('error');
    return new PortSocket(path, role.what, server, input);
  }

  /** Guest output: to the client if one is connected and keeping up, else dropped. */
  output(bytes: Uint8Array): void {
    const c = this.client;
    if (c === undefined) return;
    if (c.writableLength > MAX_CLIENT_BACKLOG) {
      if (!this.dropping) log.warn(`${this.what} ${this.path}: the client does not read; dropping guest output until it does`);
      this.dropping = true;
      return;
    }
    this.dropping = false;
    // Copied: the caller may reuse its buffer once this returns, and the socket writes later.
    c.write(Buffer.from(bytes));
  }

  get connected(): boolean {
    return this.client !== undefined;
  }

  private accept(s: Socket): void {
    s.on('error', (e) => log.debug(`${this.what} ${this.path}: client: ${e.message}`));
    if (this.client !== undefined) {
      s.end(`tsvmm: another client is connected to this ${this.what}\r\n`);
      return;
    }
    this.client = s;
    this.dropping = false;
    s.on('data', (chunk: Buffer) => this.input(chunk));
    s.on('close', () => {
      if (this.client === s) this.client = undefined;
    });
  }

  /** Disconnects the client, stops listening and removes the socket file. */
  async close(): Promise<void> {
    this.client?.destroy();
    this.client = undefined;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    try {
      unlinkSync(this.path);
    } catch {
      // Already gone (server.close removes it on some platforms, or someone else did).
    }
  }
}
