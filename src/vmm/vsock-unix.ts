/**
 * `--vsock cid=N,socket=PATH`: the host side of virtio-vsock in the hybrid mode of Firecracker and
 * Cloud Hypervisor, over Unix sockets.
 *
 * - Host → guest: a host program connects to PATH and writes `CONNECT <port>\n`; the guest gets a
 *   connection request for its port <port>. When the guest accepts, tsvmm answers
 *   `OK <host port>\n` and the socket carries the stream; when it refuses, the socket is closed.
 * - Guest → host: a guest connection to the host (CID 2) port <port> is a connection to the Unix
 *   socket `PATH_<port>`, which a host program listens on; none there, the guest's connect fails.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { unlinkSync } from 'node:fs';
import { log } from '../util/log.js';
import { claimSocketPath, VSOCK_SOCKET } from './api/socket-file.js';
import type { VirtioVsock, VsockConnectionEvents, VsockHostEnd } from '../devices/vsock/virtio-vsock/device.js';

/** The longest first line a host client may send (`CONNECT 4294967295\n` is 19 bytes). */
const MAX_CONNECT_LINE = 64;
const CONNECT_LINE = /^CONNECT (\d{1,10})$/;

/** A Unix socket as a connection's host end. */
function hostEnd(s: Socket): VsockHostEnd {
  return {
    // Copied: the device's buffer is guest data it may reuse; the socket writes later.
    write: (bytes, done) => { s.write(Buffer.from(bytes), () => done()); },
    end: () => { s.end(); },
    destroy: () => { s.destroy(); },
    pause: () => { s.pause(); },
    resume: () => { s.resume(); },
  };
}

/** Reports what happens on `s` to the device, once the connection is open. */
function pipeEvents(s: Socket, events: VsockConnectionEvents): void {
  s.on('data', (chunk: Buffer) => events.hostData(chunk));
  s.on('end', () => events.hostEnd());
  s.on('close', () => events.hostClosed());
}

export class VsockUnixBackend {
  private readonly sockets = new Set<Socket>();
  private device: VirtioVsock | undefined;
  private closed = false;

  private constructor(readonly path: string, private readonly server: Server) {
    server.on('connection', (s) => this.accept(s));
    server.on('error', (e) => log.error(`vsock socket ${path}: ${e.message}`));
  }

  /** Listens on `path` (a stale socket file there is replaced; a live one is refused). */
  static async listen(path: string): Promise<VsockUnixBackend> {
    await claimSocketPath(path, VSOCK_SOCKET);
    const server = createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(VSOCK_SOCKET.error(`cannot listen on vsock socket ${path}: ${e.message}`, path)));
      server.listen(path, () => resolve());
    });
    server.removeAllListeners('error');
    return new VsockUnixBackend(path, server);
  }

  /** The device host connections go to (set once it exists: the device needs `connectToHost`). */
  attach(device: VirtioVsock): void {
    this.device = device;
  }

  /** A guest connection to host port `port`: a connection to `PATH_<port>`. */
  connectToHost(port: number, events: VsockConnectionEvents): void {
    if (this.closed) {
      events.hostRefused();
      return;
    }
    const s = this.track(connect({ path: `${this.path}_${port}`, allowHalfOpen: true }));
    s.once('connect', () => {
      s.removeAllListeners('error');
      s.on('error', (e) => log.debug(`vsock ${this.path}_${port}: ${e.message}`));
      pipeEvents(s, events);
      events.hostConnected(hostEnd(s));
    });
    s.once('error', (e) => {
      log.debug(`vsock: guest connection to host port ${port} refused: ${e.message}`);
      events.hostRefused();
    });
  }

  /** Stops listening, drops every connection and removes the socket file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    try {
      unlinkSync(this.path);
    } catch { /* already gone */ }
  }

  private track(s: Socket): Socket {
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
    return s;
  }

  /** A host client: reads its `CONNECT <port>` line, then asks the guest. */
  private accept(s: Socket): void {
    this.track(s);
    s.on('error', (e) => log.debug(`vsock socket ${this.path}: client: ${e.message}`));
    let line = '';
    const onData = (chunk: Buffer): void => {
      const nl = chunk.indexOf(0x0a);
      line += chunk.subarray(0, nl < 0 ? chunk.length : nl).toString('latin1');
      if (nl < 0) {
        if (line.length > MAX_CONNECT_LINE) s.destroy();
        return;
      }
      s.off('data', onData);
      s.pause();
      this.connectGuest(s, line, chunk.subarray(nl + 1));
    };
    s.on('data', onData);
  }

  private connectGuest(s: Socket, line: string, early: Buffer): void {
    const m = CONNECT_LINE.exec(line);
    const port = m === null ? NaN : Number(m[1]);
    const device = this.device;
    if (!(port <= 0xffff_ffff) || device === undefined) {
      s.destroy();
      return;
    }
    const events = device.connectFromHost(port, hostEnd(s), (localPort) => {
      s.write(`OK ${localPort}\n`);
      s.resume();
    }, () => s.destroy());
    if (events === undefined) return;
    // Bytes the client sent right after its CONNECT line go to the guest once it accepts.
    if (early.length > 0) events.hostData(early);
    pipeEvents(s, events);
  }
}
