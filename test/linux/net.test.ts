/**
 * virtio-net under a real Linux guest (Debian's virtio_net, loaded by the initramfs) on a host TAP
 * that tsvmm creates (`--net tap=tsvn0,ip=10.77.0.1,...`): the guest is 10.77.0.2 on eth0. The test
 * runs in a network namespace of its own (support/netns.ts): the tsvmm it starts, its taps and
 * the host ends of the traffic are all in there, never in the host's own network.
 *
 * One boot: ping and TCP transfers with checksums both ways, and the counters. Then a snapshot
 * taken while the guest streams to the host: restored (a new tsvmm, a new tap of the same name)
 * the same TCP connection goes on (the new tap keeps the old one's MAC, so the guest's neighbour
 * cache stays right); and three clones of that snapshot at once, each in its own
 * network namespace on its own tap with the same name and addresses, are each reachable.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LinuxGuest, BOOT_TIMEOUT_MS, removeScratch, scratchDir } from '../support/linux-guest.js';
import { apiRequest } from '../support/snapshot-vm.js';
import { setupStep } from '../support/nested-retry.js';
import { until } from '../support/timing.js';
import { NetNamespace } from '../support/netns.js';

const FILE = 'test/linux/net.test.ts';
const CASE_TIMEOUT_MS = 420_000;
const TAP = 'tsvn0';
const HOST_IP = '10.77.0.1';
const GUEST_IP = '10.77.0.2';
const MAC = '52:54:00:77:00:02';
const TRANSFER_BYTES = 16 * 1024 * 1024;
const HOME_NS = 'tsvmm-net-test';
const CLONES = ['tsvmm-net-a', 'tsvmm-net-b', 'tsvmm-net-c'];

const run = promisify(execFile);
/** The tap's MAC, asked of the kernel through netlink (sysfs shows the namespace it was mounted in). */
const tapMac = (): string => /link\/ether ([0-9a-f:]{17})/.exec(execFileSync('ip', ['-o', 'link', 'show', TAP], { encoding: 'utf8' }))![1]!;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** `busybox ping` from the host (in `netns` when given): resolves when 3 echoes came back. */
async function hostPing(netns?: string): Promise<string> {
  const ping = ['busybox', 'ping', '-c', '3', '-W', '20', GUEST_IP];
  const cmd = netns === undefined ? ping : ['ip', 'netns', 'exec', netns, ...ping];
  const { stdout } = await run(cmd[0]!, cmd.slice(1), { timeout: 120_000 });
  return stdout;
}

/** A host TCP server on HOST_IP: each connection's bytes, and whether it ended. */
class Sink {
  readonly received: Buffer[][] = [];
  private constructor(readonly server: Server) {}

  static async listen(port: number): Promise<Sink> {
    const server = createServer();
    const sink = new Sink(server);
    server.on('connection', (s: Socket) => {
      const chunks: Buffer[] = [];
      sink.received.push(chunks);
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('error', () => {});
    });
    await new Promise<void>((res) => server.listen(port, HOST_IP, res));
    return sink;
  }

  bytes(connection = 0): number {
    return (this.received[connection] ?? []).reduce((n, b) => n + b.length, 0);
  }

  close(): void {
    this.server.close();
  }
}

describe('virtio-net under a real Linux guest, on a TAP', () => {
  let dir: string;
  let snap: string;
  let guest: LinuxGuest | undefined;
  let home: NetNamespace | undefined;
  const api = (name: string): string => join(dir, `${name}.sock`);

  beforeAll(async () => {
    dir = scratchDir('tsvmm-net-');
    snap = join(dir, 'snap');
    home = NetNamespace.create(HOME_NS);
    home.enter();
    guest = await setupStep(FILE, 'boot with --net', () => LinuxGuest.boot({
      cpus: 1, memoryMiB: 256, apiSocket: api('boot'),
      args: ['--net', `tap=${TAP},ip=${HOST_IP},mask=255.255.255.0,mac=${MAC}`],
      setup: async (g) => { await g.ok(`ip addr add ${GUEST_IP}/24 dev eth0 && ip link set eth0 up`); },
    }));
  }, 3 * BOOT_TIMEOUT_MS);

  afterAll(async () => {
    await guest?.killHard();
    for (const ns of CLONES) await run('ip', ['netns', 'del', ns]).catch(() => {});
    home?.remove();
    removeScratch(dir);
  });

  it('the guest has the configured MAC on eth0, and pings go both ways', { timeout: CASE_TIMEOUT_MS }, async () => {
    expect(await guest!.ok('cat /sys/class/net/eth0/address')).toBe(MAC);
    expect(await guest!.ok(`ping -c 3 -W 20 ${HOST_IP} | grep -c 'bytes from'`)).toBe('3');
    expect(await hostPing()).toMatch(/3 packets received/);
  });

  it('TCP carries 16 MiB each way intact (sha256 on both ends); vm.counters reports it', { timeout: CASE_TIMEOUT_MS }, async () => {
    // Host → guest: the guest's nc writes what it receives to a file.
    await guest!.ok('nc -l -p 5000 < /dev/null > /tmp/in & echo listening');
    const data = randomBytes(TRANSFER_BYTES);
    await until(async () => {
      const sent = await new Promise<boolean>((resolve) => {
        const s = connect({ host: GUEST_IP, port: 5000, allowHalfOpen: true });
        s.on('connect', () => s.end(data));
        s.on('close', (hadError) => resolve(!hadError));
        s.on('error', () => {});
      });
      return sent;
    }, 60_000, 'a connection to the guest\'s nc', 1000);
    expect(await guest!.ok('wait; sha256sum /tmp/in | cut -d" " -f1', 300_000)).toBe(sha(data));

    // Guest → host.
    const sink = await Sink.listen(5001);
    try {
      const guestSum = await guest!.ok(`head -c ${TRANSFER_BYTES} /dev/urandom > /tmp/out && nc ${HOST_IP} 5001 < /tmp/out && sha256sum /tmp/out | cut -d" " -f1`, 300_000);
      await until(() => sink.bytes() === TRANSFER_BYTES, 60_000, 'all of the guest\'s bytes at the host', 1000);
      expect(sha(Buffer.concat(sink.received[0]!))).toBe(guestSum);
    } finally {
      sink.close();
    }
    const counters = JSON.parse((await apiRequest(api('boot'), 'GET', 'vm.counters')).body) as Record<string, Record<string, number>>;
    expect(counters['_net0']!.rx_bytes).toBeGreaterThanOrEqual(TRANSFER_BYTES);
    expect(counters['_net0']!.tx_bytes).toBeGreaterThanOrEqual(TRANSFER_BYTES);
    expect(counters['_net0']).toMatchObject({ rx_dropped: 0, tx_dropped: 0 });
  });

  it('a snapshot taken mid-transfer restores on a new tap of the same name, and the same TCP connection goes on', { timeout: CASE_TIMEOUT_MS }, async () => {
    const sink = await Sink.listen(5002);
    let restored: LinuxGuest | undefined;
    try {
      await guest!.ok(`nc ${HOST_IP} 5002 < /dev/zero > /dev/null 2>&1 & echo streaming`);
      await until(() => sink.bytes() > 4 * 1024 * 1024, 120_000, 'the guest streaming to the host', 1000);
      const hostMac = tapMac();
      await guest!.snapshot(snap);
      await guest!.killHard();
      guest = undefined;
      const before = sink.bytes();
      restored = await LinuxGuest.restore(snap, { apiSocket: api('restored') });
      // The new tap has the old one's MAC (vm.json's host_mac): the guest's neighbour entry stays right.
      expect(tapMac()).toBe(hostMac);
      // The guest's TCP resends what the tap lost while no VMM ran; the host's end never closed.
      await until(() => sink.bytes() > before + 4 * 1024 * 1024, 180_000, 'the stream going on after the restore', 1000);
      expect(sink.received.length).toBe(1);
      expect(await hostPing()).toMatch(/3 packets received/);
    } finally {
      await restored?.killHard();
      sink.close();
    }
  });

  it('three clones at once, each in its own network namespace on its own tap with the same name and addresses, are each reachable', { timeout: CASE_TIMEOUT_MS }, async () => {
    const clones: LinuxGuest[] = [];
    try {
      for (const ns of CLONES) {
        NetNamespace.create(ns);
        clones.push(await LinuxGuest.restore(snap, { apiSocket: api(ns), netns: ns }));
      }
      for (const [i, ns] of CLONES.entries()) {
        const clone = clones[i]!;
        // Its stream's peer is gone in this namespace: nc ends on the reset.
        await clone.ok('killall nc 2>/dev/null; nc -l -p 5000 < /dev/null > /tmp/in & echo listening');
        await until(async () => {
          const r = await run('ip', ['netns', 'exec', ns, 'busybox', 'sh', '-c', `echo hello-${ns} | busybox nc ${GUEST_IP} 5000`], { timeout: 60_000 }).then(() => true, () => false);
          return r;
        }, 120_000, `a connection to clone ${ns}`, 1000);
        expect(await clone.ok('wait; cat /tmp/in', 120_000)).toBe(`hello-${ns}`);
        expect(await clone.ok(`ping -c 2 -W 20 ${HOST_IP} | grep -c 'bytes from'`)).toBe('2');
        expect(await hostPing(ns)).toMatch(/3 packets received/);
        const { stdout } = await run('ip', ['netns', 'exec', ns, 'ip', '-o', 'link', 'show', TAP]);
        expect(stdout).toContain(TAP);
      }
    } finally {
      for (const c of clones) await c.killHard();
    }
  });
});
