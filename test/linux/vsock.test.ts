/**
 * virtio-vsock under a real Linux guest (Debian's vmw_vsock_virtio_transport, loaded by the
 * initramfs; vsock-probe, built into it, is the guest's end), in the hybrid mode Cloud Hypervisor
 * and Firecracker use: the host reaches guest port P by connecting to the `--vsock socket=` path
 * and sending `CONNECT P\n`; the guest's connections to host port P go to `<socket>_P`.
 *
 * One boot: an echo server on guest port 52 (one connection at a time) and a guest agent that keeps
 * a connection to host port 1234 open (and reconnects when it goes). Then a snapshot, taken while
 * a host connection holds the echo server; its restores (two clones at once, each with its own
 * socket through `vsock_socket=`) reset the transport, so each agent reconnects to its own clone's
 * socket, and each echo server, freed from the held connection, answers.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LinuxGuest, BOOT_TIMEOUT_MS, removeScratch, scratchDir } from '../support/linux-guest.js';
import { apiRequest } from '../support/snapshot-vm.js';
import { setupStep } from '../support/nested-retry.js';

const FILE = 'test/linux/vsock.test.ts';
const CASE_TIMEOUT_MS = 300_000;
const CID = 3;
const ECHO_PORT = 52;
const AGENT_PORT = 1234;

/** A host program listening for the guest's connections to one host port: what each connection said first. */
class HostPort {
  readonly connections: { socket: Socket; text: string }[] = [];
  private waiters: (() => void)[] = [];

  private constructor(readonly server: Server) {}

  static async listen(path: string, reply?: (text: string, s: Socket) => void): Promise<HostPort> {
    const server = createServer({ allowHalfOpen: true });
    const port = new HostPort(server);
    server.on('connection', (socket) => {
      const c = { socket, text: '' };
      port.connections.push(c);
      socket.on('data', (d: Buffer) => {
        c.text += d.toString();
        for (const w of port.waiters.splice(0)) w();
      });
      socket.on('end', () => reply?.(c.text, socket));
      socket.on('error', () => {});
    });
    await new Promise<void>((res) => server.listen(path, res));
    return port;
  }

  /** Waits until a connection has said something matching `re`. */
  async waitFor(re: RegExp, timeoutMs = 60_000): Promise<{ socket: Socket; text: string }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const c = this.connections.find((x) => re.test(x.text));
      if (c !== undefined) return c;
      if (Date.now() > deadline) throw new Error(`no connection said ${re} (got ${JSON.stringify(this.connections.map((x) => x.text))})`);
      await new Promise<void>((res) => { this.waiters.push(res); setTimeout(res, 500); });
    }
  }

  close(): void {
    for (const c of this.connections) c.socket.destroy();
    this.server.close();
  }
}

/** Connects to the VM's vsock socket, asks for guest port `port`, sends `data`, half-closes, returns the reply and the OK line. */
async function hostToGuest(socketPath: string, port: number, data: Buffer, timeoutMs = 60_000): Promise<{ ok: string; reply: Buffer }> {
  return new Promise((resolve, reject) => {
    const s = connect({ path: socketPath, allowHalfOpen: true });
    s.setTimeout(timeoutMs, () => s.destroy(new Error(`no echo from guest port ${port} in ${timeoutMs} ms`)));
    const chunks: Buffer[] = [];
    let ok: string | undefined;
    let head = Buffer.alloc(0);
    s.on('connect', () => s.write(`CONNECT ${port}\n`));
    s.on('data', (d: Buffer) => {
      if (ok !== undefined) {
        chunks.push(d);
        return;
      }
      head = Buffer.concat([head, d]);
      const nl = head.indexOf(0x0a);
      if (nl < 0) return;
      ok = head.subarray(0, nl).toString();
      if (nl + 1 < head.length) chunks.push(head.subarray(nl + 1));
      s.end(data);
    });
    s.on('end', () => (ok === undefined ? reject(new Error('the vsock socket closed before OK')) : resolve({ ok, reply: Buffer.concat(chunks) })));
    s.on('error', reject);
  });
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('virtio-vsock under a real Linux guest (hybrid: Unix sockets on the host)', () => {
  let dir: string;
  let snap: string;
  let guest: LinuxGuest | undefined;
  let agent: HostPort;
  const vsockPath = (name: string): string => join(dir, `${name}.vsock`);

  beforeAll(async () => {
    dir = scratchDir('tsvmm-vsock-');
    snap = join(dir, 'snap');
    agent = await HostPort.listen(`${vsockPath('boot')}_${AGENT_PORT}`);
    guest = await setupStep(FILE, 'boot with --vsock', () => LinuxGuest.boot({
      cpus: 1, memoryMiB: 256, apiSocket: join(dir, 'boot.sock'), args: ['--vsock', `cid=${CID},socket=${vsockPath('boot')}`],
      setup: async (g) => {
        await g.ok(`vsock-probe listen ${ECHO_PORT} > /tmp/listen.log 2>&1 &`);
        await g.ok(`vsock-probe agent ${AGENT_PORT} > /tmp/agent.log 2>&1 &`);
      },
    }));
  }, 3 * BOOT_TIMEOUT_MS);

  afterAll(async () => {
    await guest?.killHard();
    agent?.close();
    removeScratch(dir);
  });

  it('the host reaches the guest: CONNECT 52 → OK <host port>, then 1 MiB echoed back intact', { timeout: CASE_TIMEOUT_MS }, async () => {
    const data = randomBytes(1024 * 1024);
    const { ok, reply } = await hostToGuest(vsockPath('boot'), ECHO_PORT, data);
    expect(ok).toMatch(/^OK \d+$/);
    expect(Number(ok.slice(3))).toBeGreaterThanOrEqual(2 ** 30);
    expect(reply.length).toBe(data.length);
    expect(sha(reply)).toBe(sha(data));
  });

  it('the guest reaches the host: its connection to host port 1235 is a connection to <socket>_1235; a port nobody listens on is refused', { timeout: CASE_TIMEOUT_MS }, async () => {
    const host = await HostPort.listen(`${vsockPath('boot')}_1235`, (text, s) => s.end(`host got: ${text}`));
    try {
      expect(await guest!.ok('vsock-probe send 1235 hello-from-the-guest')).toBe('host got: hello-from-the-guest');
      const refused = await guest!.run('vsock-probe send 1236 nobody-there');
      expect(refused.status).not.toBe(0);
      expect(refused.output).toMatch(/vsock-probe: connect: Connection (reset by peer|refused)/);
    } finally {
      host.close();
    }
  });

  it('a guest agent keeps its connection to the host; vm.counters reports the traffic', { timeout: CASE_TIMEOUT_MS }, async () => {
    const c = await agent.waitFor(/^agent 0 up\n/);
    c.socket.write('ping\n');
    await agent.waitFor(/^agent 0 up\nping\n$/);
    const counters = JSON.parse((await apiRequest(join(dir, 'boot.sock'), 'GET', 'vm.counters')).body) as Record<string, Record<string, number>>;
    expect(counters['_vsock0']).toMatchObject({ connections: expect.any(Number), tx_bytes: expect.any(Number), rx_bytes: expect.any(Number) });
    expect(counters['_vsock0']!.tx_bytes).toBeGreaterThanOrEqual(1024 * 1024);
    expect(counters['_vsock0']!.rx_bytes).toBeGreaterThanOrEqual(1024 * 1024);
  });

  it('after a restore the transport is reset: two clones at once, each on its own socket (vsock_socket=); each agent reconnects to its clone and each echo server answers', { timeout: CASE_TIMEOUT_MS }, async () => {
    // A connection the echo server is blocked on (it serves one at a time) when the snapshot is
    // taken: only the transport reset frees a clone's server from it, for the echoes below.
    const held = connect(vsockPath('boot'));
    held.on('error', () => {});
    held.write(`CONNECT ${ECHO_PORT}\n`);
    await new Promise<void>((res) => held.once('data', () => res()));
    await guest!.snapshot(snap);
    await guest!.killHard();
    guest = undefined;
    const clones = ['clone1', 'clone2'];
    const agents = await Promise.all(clones.map((c) => HostPort.listen(`${vsockPath(c)}_${AGENT_PORT}`)));
    const restored: LinuxGuest[] = [];
    try {
      for (const c of clones) restored.push(await LinuxGuest.restore(snap, { apiSocket: join(dir, `${c}.sock`), vsockSocket: vsockPath(c) }));
      for (const [i, c] of clones.entries()) {
        // The agent's old connection was reset by the transport reset; it connected again, to this clone's socket.
        const conn = await agents[i]!.waitFor(/^agent 1 up\n/);
        conn.socket.write(`hello ${c}\n`);
        await agents[i]!.waitFor(new RegExp(`^agent 1 up\\nhello ${c}\\n$`));
        const { reply } = await hostToGuest(vsockPath(c), ECHO_PORT, Buffer.from(`echo from ${c}`));
        expect(reply.toString()).toBe(`echo from ${c}`);
      }
    } finally {
      held.destroy();
      for (const g of restored) await g.killHard();
      for (const a of agents) a.close();
    }
  });
});
