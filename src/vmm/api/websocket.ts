import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { ConsolePortName, VmmController } from '../controller.js';
import { BadRequestError } from './http-errors.js';
import { errorResponse, toJson } from './status.js';

/**
 * The two WebSocket endpoints, served on the API's HTTP server in `noServer` mode:
 *  - vmm.events: one JSON text message per VmmEvent, in the order the controller emits them.
 *  - vm.console: binary frames both ways to a console port in socket mode (`?port=serial` or
 *    `?port=console`; without it, the serial port if it is in socket mode, else the virtio
 *    console); one client per port. Closing the socket only detaches; the guest keeps running.
 * A client that stops reading is disconnected (close 1013) rather than buffered without bound.
 */
const MAX_BACKLOG_BYTES = 4 * 1024 * 1024;
const MAX_MESSAGE_BYTES = 1024 * 1024;
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_TRY_AGAIN_LATER = 1013;


/** The `port` query parameter of a vm.console upgrade; undefined when absent. */
function consolePortOf(req: IncomingMessage): ConsolePortName | undefined {
  const port = new URL(req.url ?? '/', 'http://localhost').searchParams.get('port');
  if (port === null) return undefined;
  if (port !== 'serial' && port !== 'console') throw new BadRequestError(`vm.console: port "${port}" must be serial or console`);
  return port;
}

/**
 * Writes an HTTP error response straight onto a socket and closes it: for refused upgrades (the
 * socket never became a WebSocket) and for requests the HTTP parser rejected.
 */
export function writeRawError(socket: Duplex, err: unknown, extraHeaders: Record<string, string> = {}): void {
  const { status, body } = errorResponse(err);
  const text = toJson(body);
  const headers = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(text)}`,
    'Connection: close',
    ...Object.entries(extraHeaders).map(([k, v]) => `${k}: ${v}`),
  ];
  if (socket.writable) socket.end(`${headers.join('\r\n')}\r\n\r\n${text}`, () => socket.destroy());
  else socket.destroy();
}

function tooSlow(ws: WebSocket): boolean {
  if (ws.bufferedAmount <= MAX_BACKLOG_BYTES) return false;
  ws.close(CLOSE_TRY_AGAIN_LATER, 'client too slow: more than 4 MiB unread');
  return true;
}

export class WebSocketEndpoints {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false });

  constructor(private readonly controller: VmmController) {}

  /** Number of open event and console clients (for tests and shutdown). */
  get clientCount(): number {
    return this.wss.clients.size;
  }

  events(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const unsubscribe = this.controller.subscribe((event) => {
        if (ws.readyState !== ws.OPEN || tooSlow(ws)) return;
        ws.send(toJson(event));
      });
      ws.on('close', unsubscribe);
      ws.on('error', () => ws.terminate());
      // Events flow one way; anything the client sends is ignored.
    });
  }

  console(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    let attachment;
    try {
      attachment = this.controller.attachConsole(consolePortOf(req));
    } catch (err) {
      writeRawError(socket, err);
      return;
    }
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      attachment.detach();
    };
    // If the handshake itself fails (bad Sec-WebSocket-Key), ws answers 400 and never calls back.
    socket.once('close', release);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      attachment.onOutput((bytes) => {
        if (released || ws.readyState !== ws.OPEN || tooSlow(ws)) return;
        ws.send(bytes, { binary: true });
      });
      // Text frames are accepted too (their payload is already UTF-8 bytes): handy for scripts.
      ws.on('message', (data) => {
        if (released) return;
        const chunks = Array.isArray(data) ? data : [data instanceof ArrayBuffer ? Buffer.from(data) : data];
        for (const c of chunks) attachment.input(new Uint8Array(c.buffer, c.byteOffset, c.byteLength));
      });
      ws.on('close', release);
      ws.on('error', () => ws.terminate());
    });
  }

  /** Closes every client (1001 going away); consoles detach through their close handlers. */
  closeAll(): void {
    for (const ws of this.wss.clients) ws.close(CLOSE_GOING_AWAY, 'tsvmm API server is shutting down');
    // Give close frames a moment, then cut whatever did not finish the closing handshake.
    setTimeout(() => {
      for (const ws of this.wss.clients) ws.terminate();
    }, 500).unref();
    this.wss.close();
  }
}
