import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VsockUnixBackend } from '../../src/vmm/vsock-unix.js';
import { until } from '../support/timing.js';
import type { VirtioVsock, VsockConnectionEvents, VsockHostEnd } from '../../src/devices/vsock/virtio-vsock/device.js';

/** Records what the backend asks of the device and what it reports. */
class FakeDevice {
  readonly requests: { port: number; end: VsockHostEnd; accepted: (p: number) => void; refused: () => void }[] = [];
  readonly data: string[] = [];
  ended = 0;
  closed = 0;
  connectFromHost(port: number, end: VsockHostEnd, accepted: (p: number) => void, refused: () => void): VsockConnectionEvents {
    this.requests.push({ port, end, accepted, refused });
    return this.events();
  }
  events(): VsockConnectionEvents {
    return {
      hostConnected: () => {}, hostRefused: () => {},
      hostData: (b) => { this.data.push(Buffer.from(b).toString()); },
      hostEnd: () => { this.ended++; },
      hostClosed: () => { this.closed++; },
    };
  }
}

function client(path: string): { s: Socket; text: () => string; closed: () => boolean } {
  const s = connect(path);
  let text = '';
  let closed = false;
  s.on('data', (d: Buffer) => { text += d.toString(); });
  s.on('close', () => { closed = true; });
  s.on('error', () => {});
  return { s, text: () => text, closed: () => closed };
}

describe('the hybrid vsock host side (Unix sockets)', () => {
  let dir: string;
  let backend: VsockUnixBackend | undefined;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'vsock-unix-')); });
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  /** A backend listening on DIR/v.sock, its host connections going to a FakeDevice. */
  async function listening(): Promise<{ device: FakeDevice; backend: VsockUnixBackend }> {
    const device = new FakeDevice();
    const b = await VsockUnixBackend.listen(join(dir, 'v.sock'));
    b.attach(device as unknown as VirtioVsock);
    backend = b;
    return { device, backend: b };
  }

  it('CONNECT <port>: the guest is asked; OK <host port> once it accepts, and the bytes sent early reach it first', async () => {
    const { device } = await listening();
    const c = client(join(dir, 'v.sock'));
    c.s.write('CONNECT 52\nearly');
    await until(() => device.requests.length === 1);
    expect(device.requests[0]!.port).toBe(52);
    expect(device.data).toEqual(['early']);
    device.requests[0]!.accepted(1073741824);
    await until(() => c.text() === 'OK 1073741824\n');
    c.s.write('later');
    await until(() => device.data.length === 2);
    expect(device.data[1]).toBe('later');
    c.s.end();
    await until(() => device.ended === 1);
  });

  it('a refusal, a malformed first line or a port beyond 32 bits closes the client', async () => {
    const { device } = await listening();
    const refused = client(join(dir, 'v.sock'));
    refused.s.write('CONNECT 7\n');
    await until(() => device.requests.length === 1);
    device.requests[0]!.refused();
    const bad = client(join(dir, 'v.sock'));
    bad.s.write('HELLO 7\n');
    const big = client(join(dir, 'v.sock'));
    big.s.write('CONNECT 4294967296\n');
    await until(() => refused.closed() && bad.closed() && big.closed());
    expect(device.requests).toHaveLength(1);
  });

  it('a guest connection to host port P is a connection to PATH_P; nobody there is a refusal', async () => {
    const { backend: b } = await listening();
    let got = '';
    const server = createServer((s) => s.on('data', (d: Buffer) => { got += d.toString(); }));
    await new Promise<void>((r) => server.listen(join(dir, 'v.sock_1234'), r));
    try {
      const outcome: string[] = [];
      b.connectToHost(1234, {
        hostConnected: (end) => { outcome.push('connected'); end.write(Buffer.from('hi'), () => outcome.push('written')); },
        hostRefused: () => outcome.push('refused'), hostData: () => {}, hostEnd: () => {}, hostClosed: () => {},
      });
      b.connectToHost(1235, {
        hostConnected: () => outcome.push('connected 1235'), hostRefused: () => outcome.push('refused 1235'),
        hostData: () => {}, hostEnd: () => {}, hostClosed: () => {},
      });
      await until(() => got === 'hi' && outcome.includes('refused 1235') && outcome.includes('written'));
      expect(outcome).not.toContain('connected 1235');
    } finally {
      server.close();
    }
  });

  it('a stale socket file is replaced; a live socket or a plain file is refused with EVSOCKSOCKET', async () => {
    const path = join(dir, 'v.sock');
    // A socket file nobody listens on, as a killed VMM leaves behind.
    spawnSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(path)})`]);
    expect(existsSync(path)).toBe(true);
    backend = await VsockUnixBackend.listen(path);
    await expect(VsockUnixBackend.listen(path)).rejects.toMatchObject({ code: 'EVSOCKSOCKET' });
    writeFileSync(join(dir, 'plain'), 'x');
    await expect(VsockUnixBackend.listen(join(dir, 'plain'))).rejects.toMatchObject({ code: 'EVSOCKSOCKET', message: expect.stringMatching(/not a socket/) });
  });
});
