import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { TsvmmError } from '../../errors.js';

/** The API socket path cannot be used: another server answers on it, it is not a socket, or listen failed. */
export class ApiSocketError extends TsvmmError {
  constructor(message: string, path: string) {
    super('EAPISOCKET', message, { path });
  }
}

/** The `--serial socket=PATH` or `--console socket=PATH` path cannot be used, for the same reasons. */
export class PortSocketError extends TsvmmError {
  constructor(message: string, path: string) {
    super('ESERIALSOCKET', message, { path });
  }
}

/** The `--vsock socket=PATH` path cannot be used, for the same reasons. */
export class VsockSocketError extends TsvmmError {
  constructor(message: string, path: string) {
    super('EVSOCKSOCKET', message, { path });
  }
}

/** Which listening socket a path is claimed for: how errors name it, and whether its peer is a tsvmm API. */
export interface SocketRole {
  /** "API socket", "serial socket": how messages name it. */
  what: string;
  /** The flag a user changes to choose another path. */
  flag: string;
  error: (message: string, path: string) => TsvmmError;
  /** Ask a live peer for its pid through vmm.ping (only where the peer speaks the API). */
  askPid: boolean;
}

export const API_SOCKET: SocketRole = { what: 'API socket', flag: '--api-socket', error: (m, p) => new ApiSocketError(m, p), askPid: true };
export const SERIAL_SOCKET: SocketRole = { what: 'serial socket', flag: '--serial socket=', error: (m, p) => new PortSocketError(m, p), askPid: false };
export const VSOCK_SOCKET: SocketRole = { what: 'vsock socket', flag: '--vsock socket=', error: (m, p) => new VsockSocketError(m, p), askPid: false };
export const CONSOLE_SOCKET: SocketRole = { what: 'console socket', flag: '--console socket=', error: (m, p) => new PortSocketError(m, p), askPid: false };

const MAX_SOCKET_PATH_BYTES = 107;

type Probe = 'absent' | 'stale' | 'live';

function connectProbe(path: string, role: SocketRole): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve('live');
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') resolve('stale'); // left behind by a process that died
      else if (err.code === 'ENOENT') resolve('absent');
      else reject(role.error(`cannot probe ${role.what} ${path}: ${err.message}`, path));
    });
  });
}

/** Asks whoever answers for its pid through vmm.ping, to name it in the error; undefined if it will not say. */
function peerPid(path: string, timeoutMs: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = request({ socketPath: path, path: '/api/v1/vmm.ping', method: 'GET', timeout: timeoutMs, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (text.length < 65536) text += chunk;
      });
      res.on('end', () => {
        try {
          const pid = (JSON.parse(text) as { pid?: unknown }).pid;
          resolve(typeof pid === 'number' ? pid : undefined);
        } catch {
          resolve(undefined);
        }
      });
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/**
 * Makes `path` free for a new listener: nothing there → fine; a socket nobody answers on (a
 * crashed VMM's leftover) → removed; a live server → the role's error, naming its pid when it
 * answers vmm.ping (API sockets only); anything that is not a socket → refused (never delete a user's file).
 */
export async function claimSocketPath(path: string, role: SocketRole = API_SOCKET): Promise<void> {
  // sun_path holds 108 bytes with the NUL; longer paths would be silently truncated by bind().
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw role.error(`${role.what} path is ${Buffer.byteLength(path)} bytes; Unix socket paths are limited to ${MAX_SOCKET_PATH_BYTES}: choose a shorter path`, path);
  }
  if (!existsSync(dirname(path))) {
    throw role.error(`cannot create ${role.what} ${path}: directory ${dirname(path)} does not exist`, path);
  }
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw role.error(`cannot check ${role.what} path ${path}: ${(err as Error).message}`, path);
  }
  if (!isSocket) {
    throw role.error(`${path} exists and is not a socket; remove it or choose another ${role.flag} path`, path);
  }
  const probe = await connectProbe(path, role);
  if (probe === 'live') {
    const pid = role.askPid ? await peerPid(path, 1000) : undefined;
    const who = pid === undefined ? 'another process' : `another tsvmm (pid ${pid})`;
    throw role.error(`${who} is serving ${path}; stop it or choose another ${role.flag} path`, path);
  }
  if (probe === 'stale') {
    try {
      unlinkSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw role.error(`cannot remove stale ${role.what} ${path}: ${(err as Error).message}`, path);
      }
    }
  }
}
