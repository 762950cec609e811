/** `--serial socket=PATH` / `--console socket=PATH` (src/vmm/port-socket.ts) with real Unix sockets, no VM. */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PortSocket } from '../../src/vmm/port-socket.js';
import { CONSOLE_SOCKET, SERIAL_SOCKET } from '../../src/vmm/api/socket-file.js';
import { until } from '../support/timing.js';

let dir: string;
let open: PortSocket | undefined;
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'tsvmm-serial-sock-')); });
afterEach(async () => {
  await open?.close();
  open = undefined;
  rmSync(dir, { recursive: true, force: true });
});

async function client(path: string): Promise<{ socket: Socket; text: () => string; closed: Promise<void> }> {
  const socket = connect(path);
  let text = '';
  socket.setEncoding('latin1').on('data', (d: string) => { text += d; });
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  await new Promise<void>((resolve, reject) => { socket.once('connect', () => resolve()); socket.once('error', reject); });
  return { socket, text: () => text, closed };
}


describe('PortSocket', () => {
  it('carries guest output to the client and the client\'s bytes to the guest; one client at a time', async () => {
    const input: string[] = [];
    const path = join(dir, 's.sock');
    open = await PortSocket.listen(path, SERIAL_SOCKET, (b) => input.push(Buffer.from(b).toString()));
    open.output(Buffer.from('before anyone listens\n')); // dropped: nothing plugged in
    const c = await client(path);
    await until(() => open!.connected);
    open.output(Buffer.from('hello\n'));
    await until(() => c.text() === 'hello\n');
    c.socket.write('ls\r');
    await until(() => input.join('') === 'ls\r');
    const second = await client(path);
    await second.closed;
    expect(second.text()).toMatch(/another client is connected/);
    // The first client leaves; the next one is the serial line again.
    c.socket.destroy();
    await until(() => !open!.connected);
    const third = await client(path);
    await until(() => open!.connected);
    open.output(Buffer.from('again'));
    await until(() => third.text() === 'again');
    third.socket.destroy();
  });

  it('replaces a stale socket file, refuses a live one and a file that is not a socket, and removes its own on close', async () => {
    const path = join(dir, 'left.sock');
    // A process that listens there and is killed -9 leaves the socket file behind, as a crashed VMM would.
    const holder = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`]);
    await new Promise<void>((r) => holder.stdout.once('data', () => r()));
    await expect(PortSocket.listen(path, SERIAL_SOCKET, () => {})).rejects.toThrow(/another process is serving .*left.sock; stop it or choose another --serial socket= path/);
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    expect(existsSync(path)).toBe(true);
    writeFileSync(join(dir, 'plain'), 'x');
    await expect(PortSocket.listen(join(dir, 'plain'), SERIAL_SOCKET, () => {})).rejects.toMatchObject({ code: 'ESERIALSOCKET', message: expect.stringMatching(/exists and is not a socket/) });
    open = await PortSocket.listen(path, SERIAL_SOCKET, () => {});
    await open.close();
    open = undefined;
    expect(existsSync(path)).toBe(false);
  });

  it('names the console socket and its flag for --console socket=PATH', async () => {
    writeFileSync(join(dir, 'plain'), 'x');
    await expect(PortSocket.listen(join(dir, 'plain'), CONSOLE_SOCKET, () => {})).rejects.toMatchObject({
      code: 'ESERIALSOCKET', message: expect.stringMatching(/plain exists and is not a socket; remove it or choose another --console socket= path/),
    });
    const path = join(dir, 'c.sock');
    open = await PortSocket.listen(path, CONSOLE_SOCKET, () => {});
    const first = await client(path);
    await until(() => open!.connected);
    const second = await client(path);
    await second.closed;
    expect(second.text()).toMatch(/another client is connected to this console socket/);
    first.socket.destroy();
  });

  it('drops output for a client that does not read instead of buffering without bound', async () => {
    const path = join(dir, 'slow.sock');
    open = await PortSocket.listen(path, SERIAL_SOCKET, () => {});
    const c = await client(path);
    c.socket.pause();
    await until(() => open!.connected);
    const chunk = Buffer.alloc(64 * 1024, 0x41);
    for (let i = 0; i < 200; i++) open.output(chunk); // 12.5 MiB to a reader that reads nothing
    const backlog = (open as unknown as { client: Socket }).client.writableLength;
    expect(backlog).toBeLessThan(4 * 1024 * 1024);
    c.socket.destroy();
  });
});
