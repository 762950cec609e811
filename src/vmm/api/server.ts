import { chmodSync, statSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { VmmController } from '../controller.js';
import { BadRequestError, BodyTooLargeError, HttpProtocolError, MethodNotAllowedError, RouteNotFoundError, UpgradeRequiredError } from './http-errors.js';
import { OperationQueue } from './op-queue.js';
import type { ActionRoute, Route } from './route.js';
import { findRoute } from './routes.js';
import { claimSocketPath, ApiSocketError } from './socket-file.js';
import { errorResponse, toJson } from './status.js';
import { writeRawError, WebSocketEndpoints } from './websocket.js';

/**
 * The control-plane HTTP/1.1 server on a Unix socket (Cloud Hypervisor's API, base /api/v1),
 * written against VmmController only. Bad clients cost a 4xx and their own connection, never
 * the process: every handler's failure is caught and turned into a JSON error body.
 */
/** Where the API listens: a socket file tsvmm creates, or a listening socket it inherited (fd). */
export type ApiListen = { path: string } | { fd: number };

export interface ApiServerOptions {
  listen: ApiListen;
  controller: VmmController;
  /** Largest request body accepted; larger gets 413. Default 1 MiB. */
  maxBodyBytes?: number;
  /** A client must finish sending headers within this. Default 10 s. */
  headersTimeoutMs?: number;
  /** A client must finish sending the whole request within this. Default 30 s. */
  requestTimeoutMs?: number;
  /** Idle keep-alive connections are closed after this. Default 5 s. */
  keepAliveTimeoutMs?: number;
  /** Where server-side failures (500s, vmm.shutdown errors) are reported. Default: stderr. */
  log?: (line: string) => void;
}

export interface ApiServer {
  /** The socket file, or `fd=N` for an inherited socket. */
  readonly socketPath: string;
  /** Stops listening, closes every connection and WebSocket, removes the socket file. Idempotent. */
  close(): Promise<void>;
}

const DEFAULT_MAX_BODY = 1024 * 1024;

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(new BodyTooLargeError(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume(); // stop buffering; the connection is closed after the 413
        reject(new BodyTooLargeError(limit));
      } else {
        chunks.push(chunk);
      }
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    // A client that goes away mid-body ('aborted' error, or close before 'end') is its own problem,
    // not a server failure: it becomes a 400 that usually nobody is left to read.
    const abandoned = (): void => reject(new BadRequestError('client closed the connection before sending the whole body'));
    req.on('close', () => {
      if (!req.complete) abandoned();
    });
    req.on('error', abandoned);
  });
}

function send(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): Promise<void> {
  return new Promise((resolve) => {
    if (res.headersSent || res.destroyed) {
      resolve();
      return;
    }
    res.once('finish', resolve);
    res.once('close', resolve);
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    if (body === undefined) {
      res.writeHead(status).end();
    } else {
      const text = toJson(body);
      res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) }).end(text);
    }
  });
}

function requestPath(req: IncomingMessage): string {
  try {
    return new URL(req.url ?? '/', 'http://localhost').pathname;
  } catch {
    return req.url ?? '/';
  }
}

/** Parses the body of an action route: JSON for routes that take one, nothing for the others. */
function parseActionBody(route: ActionRoute, raw: Buffer): unknown {
  const text = raw.toString('utf8').trim();
  if (route.parseBody === undefined) {
    if (text.length > 0) throw new BadRequestError(`${route.name} takes no request body`);
    return undefined;
  }
  if (text.length === 0) throw new BadRequestError(`${route.name} needs a JSON request body`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`request body is not valid JSON: ${(err as Error).message}`);
  }
  return route.parseBody(value);
}

function checkRoute(method: string | undefined, path: string): Route {
  const route = findRoute(path);
  if (route === undefined) throw new RouteNotFoundError(path);
  if (method !== route.method) throw new MethodNotAllowedError(method ?? '?', path, [route.method]);
  return route;
}

export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const { listen, controller } = options;
  const socketPath = 'path' in listen ? listen.path : `fd=${listen.fd}`;
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const log = options.log ?? ((line: string) => process.stderr.write(`tsvmm: ${line}\n`));
  const headersTimeout = options.headersTimeoutMs ?? 10_000;
  const queue = new OperationQueue();
  const ws = new WebSocketEndpoints(controller);
  const sockets = new Set<Duplex>(); // HTTP connections
  const upgraded = new Set<Duplex>(); // WebSocket connections (and refused upgrades being answered)
  let closing: Promise<void> | undefined;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = requestPath(req);
    const route = checkRoute(req.method, path);
    if (route.kind === 'websocket') throw new UpgradeRequiredError(path);
    const raw = await readBody(req, maxBody);
    if (route.kind === 'json') {
      // GET bodies carry no meaning; they were read (to keep the connection in sync) and dropped.
      await send(res, 200, route.read(controller));
      return;
    }
    const body = parseActionBody(route, raw);
    if (route.respondFirst === true) {
      await queue.submit(route.name, route.concurrency, async () => {
        await send(res, 204);
        await server.close();
        try {
          await route.run(controller, body);
        } catch (err) {
          log(`${route.name} failed after it was acknowledged: ${(err as Error).message}`);
        }
      });
      return;
    }
    const report = await queue.submit(route.name, route.concurrency, () => route.run(controller, body));
    if (report === undefined) await send(res, 204);
    else await send(res, 200, report);
  }

  const http: Server = createServer(
    {
      headersTimeout,
      requestTimeout: options.requestTimeoutMs ?? 30_000,
      keepAliveTimeout: options.keepAliveTimeoutMs ?? 5_000,
      // How often Node looks for connections past the timeouts above; its 30 s default would let a
      // slow client hold a connection far longer than headersTimeout says.
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))),
      maxHeaderSize: 16 * 1024,
    },
    (req, res) => {
      handle(req, res).catch((err: unknown) => {
        const { status, body } = errorResponse(err);
        if (status >= 500) log(`${req.method} ${req.url}: ${(err as Error)?.stack ?? String(err)}`);
        const headers: Record<string, string> = {};
        if (err instanceof MethodNotAllowedError) headers.Allow = err.allow.join(', ');
        // After a 413 (or an abandoned body) the rest of the body is unread: do not reuse the connection.
        if (!req.complete) headers.Connection = 'close';
        send(res, status, body, headers).catch(() => res.destroy());
      });
    },
  );

  // A client may send a whole request and then shut down its sending side (`nc -N`, scripts
  // that close stdin). Node's default is to abort the request and end the socket at once, so
  // the operation still runs but its answer is lost; with half-open allowed the pending
  // response is written and the socket ends after it. (http.Server's own flag, set by Node's
  // http module itself; not in its type definitions.)
  (http as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;

  http.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  });

  http.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // Malformed request line/headers, header overflow, header or request timeouts: answer if the
    // socket can still take it, then drop the connection (the parser state is unrecoverable).
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const code = err.code === 'HPE_HEADER_OVERFLOW' ? 'EHEADERS' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'ETIMEOUT' : 'EBADREQUEST';
    const message = code === 'ETIMEOUT' ? 'request not received in time' : code === 'EHEADERS' ? 'request headers too large' : `malformed HTTP request (${err.code ?? err.message})`;
    writeRawError(socket, new HttpProtocolError(code, message));
  });

  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    sockets.delete(socket);
    upgraded.add(socket);
    socket.on('close', () => upgraded.delete(socket));
    socket.on('error', () => socket.destroy());
    try {
      const path = requestPath(req);
      const route = checkRoute(req.method, path);
      if (route.kind !== 'websocket') throw new BadRequestError(`${path} is not a WebSocket endpoint`);
      if (route.name === 'vmm.events') ws.events(req, socket, head);
      else ws.console(req, socket, head);
    } catch (err) {
      writeRawError(socket, err, err instanceof MethodNotAllowedError ? { Allow: err.allow.join(', ') } : {});
    }
  });

  if ('path' in listen) await claimSocketPath(listen.path);
  await new Promise<void>((resolve, reject) => {
    http.once('error', (err: Error) => {
      reject(new ApiSocketError(`cannot listen on API socket ${socketPath}: ${err.message}`, socketPath));
    });
    // An inherited socket is already bound and listening (Cloud Hypervisor's --api-socket fd=N).
    http.listen('path' in listen ? listen.path : { fd: listen.fd }, () => {
      http.removeAllListeners('error');
      resolve();
    });
  });
  http.on('error', (err) => log(`API server error: ${err.message}`));
  // Only the owner may drive the VMM. (The window before chmod is closed by the umask-created
  // mode already denying others write access in the usual 022/077 umasks.) An inherited
  // socket's file belongs to whoever made it.
  let inode: number | undefined;
  if ('path' in listen) {
    chmodSync(listen.path, 0o600);
    inode = statSync(listen.path).ino;
  }

  const server: ApiServer = {
    socketPath,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
        for (const s of sockets) s.destroy();
        // WebSocket clients get a close frame (1001) first; whatever is still open shortly after is cut.
        ws.closeAll();
        setTimeout(() => {
          for (const s of upgraded) s.destroy();
        }, 1000).unref();
        // Remove the file only if it is still ours (a later server may have claimed the path).
        try {
          if ('path' in listen && statSync(listen.path).ino === inode) unlinkSync(listen.path);
        } catch {
          // already gone
        }
      });
      return closing;
    },
  };
  return server;
}
