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

const MAX_SOCKET_PATH_BYTES = 107;

type Probe = 'absent' | 'stale' | 'live';

function connectProbe(path: string): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve('live');
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') resolve('stale'); // left behind by a process that died
      else if (err.code === 'ENOENT') resolve('absent');
      else reject(new ApiSocketError(`cannot probe API socket ${path}: ${err.message}`, path));
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
 * crashed VMM's leftover) → removed; a live server → SocketInUseError naming its pid when it
 * answers vmm.ping; anything that is not a socket → refused (never delete a user's file).
 */
export async function claimSocketPath(path: string): Promise<void> {
  // sun_path holds 108 bytes with the NUL; longer paths would be silently truncated by bind().
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new ApiSocketError(
      `API socket path is ${Buffer.byteLength(path)} bytes; Unix socket paths are limited to ${MAX_SOCKET_PATH_BYTES}: choose a shorter path`,
      path,
    );
  }
  if (!existsSync(dirname(path))) {
    throw new ApiSocketError(`cannot create API socket ${path}: directory ${dirname(path)} does not exist`, path);
  }
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new ApiSocketError(`cannot check API socket path ${path}: ${(err as Error).message}`, path);
  }
  if (!isSocket) {
    throw new ApiSocketError(`${path} exists and is not a socket; remove it or choose another --api-socket path`, path);
  }
  const probe = await connectProbe(path);
  if (probe === 'live') {
    const pid = await peerPid(path, 1000);
    const who = pid === undefined ? 'another process' : `another tsvmm (pid ${pid})`;
    throw new ApiSocketError(`${who} is serving ${path}; stop it or choose another --api-socket path`, path);
  }
  if (probe === 'stale') {
    try {
      unlinkSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new ApiSocketError(`cannot remove stale API socket ${path}: ${(err as Error).message}`, path);
      }
    }
  }
}
