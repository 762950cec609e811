#!/usr/bin/env node
// virtio-net in a stock Debian Linux on a host TAP, tsvmm against QEMU's virtio-net (vhost off, so
// QEMU's own user-space device, as tsvmm's is) on the same KVM in the same run, same guest:
//   tsvmm  --net tap=tsvbench0,ip=10.78.0.1,mask=255.255.255.0
//   QEMU   -netdev tap,ifname=qbench0,vhost=off -device virtio-net-device (microvm)
// The guest is 10.78.0.2. Measured from the host: TCP throughput each way (MIB MiB through the
// guest's busybox nc, timed at the host's socket), and request/response latency as ICMP echo round
// trips (busybox ping, PINGS of them). Rounds alternate the order of the VMMs. Prints a markdown
// table and one JSON line.
//
//   node bench/net-bench.mjs [--rounds 1] [--mib 48] [--pings 50]
// Needs root (taps), `npm run build`, `npm run guest`, qemu-system-x86_64 and busybox; on a host
// without /dev/kvm run it nested: node tools/nested/run.mjs -- node bench/net-bench.mjs
import { execFileSync } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { parseArgs } from 'node:util';
import { alternateRounds, booted, median, qemuCommand, ratioRow, requireInputs, sh, start, tsvmmCommand } from './lib/linux-console.mjs';

const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string', default: '1' },
    mib: { type: 'string', default: '48' },
    pings: { type: 'string', default: '50' },
  },
});
const ROUNDS = Number(opt.rounds);
const BYTES = Number(opt.mib) * 1024 * 1024;
const HOST_IP = '10.78.0.1';
const GUEST_IP = '10.78.0.2';
const CMDLINE = 'console=ttyS0 panic=-1 nmi_watchdog=0';
requireInputs('net-bench');

/** MiB/s of BYTES the guest sends to a host socket, from its first byte to its end. */
async function guestToHost(p) {
  let first = 0;
  let got = 0;
  const done = new Promise((resolve, reject) => {
    const server = createServer((s) => {
      s.on('data', (d) => { if (got === 0) first = performance.now(); got += d.length; });
      s.on('end', () => { server.close(); resolve(performance.now()); });
      s.on('error', reject);
    });
    // From a file in the guest's RAM: a pipe from head(1) would measure the guest's scheduler, not the device.
    server.listen(5001, HOST_IP, () => sh(p, `nc ${HOST_IP} 5001 < /tmp/zero`, 600_000).catch(reject));
  });
  const end = await done;
  if (got !== BYTES) throw new Error(`guest → host: ${got} of ${BYTES} bytes`);
  return BYTES / 2 ** 20 / ((end - first) / 1000);
}

/** MiB/s of BYTES the host sends to the guest's nc (which discards them), until the guest closes. */
async function hostToGuest(p) {
  await sh(p, 'nc -l -p 5000 < /dev/null > /dev/null & sleep 1');
  const chunk = Buffer.alloc(1 << 20);
  return new Promise((resolve, reject) => {
    const s = connect({ host: GUEST_IP, port: 5000, allowHalfOpen: true });
    let started = 0;
    s.on('connect', () => {
      started = performance.now();
      let left = BYTES / chunk.length;
      const pump = () => { while (left > 0) { left--; if (!s.write(chunk)) { s.once('drain', pump); return; } } s.end(); };
      pump();
    });
    s.on('close', () => resolve(BYTES / 2 ** 20 / ((performance.now() - started) / 1000)));
    s.on('error', reject);
  });
}

/** Median ICMP echo round trip host → guest (µs), from busybox ping's own summary. */
function pingUs() {
  const out = execFileSync('busybox', ['ping', '-c', opt.pings, '-i', '0.05', '-W', '10', GUEST_IP], { encoding: 'utf8', timeout: 300_000 });
  const rtts = [...out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000);
  if (rtts.length === 0) throw new Error(`ping: no replies\n${out}`);
  return { median: median(rtts), p99: rtts.sort((a, b) => a - b)[Math.min(rtts.length - 1, Math.floor(rtts.length * 0.99))] };
}

/** One VMM's measurements; a boot that fails (guests triple-fault at random on the nested test host) is tried again, twice. */
async function measure(vmm) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await measureOnce(vmm);
    } catch (e) {
      if (attempt === 3) throw e;
      console.error(`net-bench: ${vmm} attempt ${attempt} failed, trying again: ${String(e.message).split('\n')[0]}`);
    }
  }
}

async function measureOnce(vmm) {
  const tap = vmm === 'tsvmm' ? 'tsvbench0' : 'qbench0';
  const p = start(vmm, vmm === 'tsvmm'
    ? tsvmmCommand(CMDLINE, ['--serial', 'tty', '--console', 'off', '--net', `tap=${tap},ip=${HOST_IP},mask=255.255.255.0`])
    : qemuCommand(CMDLINE, ['-serial', 'stdio', '-netdev', `tap,id=n0,ifname=${tap},script=no,downscript=no,vhost=off`, '-device', 'virtio-net-device,netdev=n0']));
  try {
    await booted(p);
    if (vmm === 'qemu') {
      execFileSync('ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', tap]);
      execFileSync('ip', ['link', 'set', tap, 'up']);
    }
    await sh(p, `ip addr add ${GUEST_IP}/24 dev eth0 && ip link set eth0 up`);
    await sh(p, `head -c ${BYTES} /dev/zero > /tmp/zero`, 600_000);
    pingUs(); // ARP and warm-up
    const rtt = pingUs();
    return { rtt_median_us: rtt.median, rtt_p99_us: rtt.p99, guest_to_host_mib_s: await guestToHost(p), host_to_guest_mib_s: await hostToGuest(p) };
  } finally {
    p.child.kill('SIGKILL');
    await new Promise((r) => (p.child.exitCode !== null ? r() : p.child.on('exit', r)));
  }
}

const results = await alternateRounds('net-bench', ROUNDS, measure);
const row = (label, k, digits) => ratioRow(results, label, k, digits);
console.log(`\n| virtio-net on a TAP, host ↔ guest, ${ROUNDS} round(s) | tsvmm | QEMU (vhost off) | ratio |`);
console.log('|---|---:|---:|---:|');
console.log(row(`ICMP echo round trip, median of ${opt.pings} (µs)`, 'rtt_median_us', 0));
console.log(row('ICMP echo round trip, p99 (µs)', 'rtt_p99_us', 0));
console.log(row(`TCP guest → host, ${opt.mib} MiB (MiB/s)`, 'guest_to_host_mib_s', 1));
console.log(row(`TCP host → guest, ${opt.mib} MiB (MiB/s)`, 'host_to_guest_mib_s', 1));
console.log(JSON.stringify({ bench: 'net', rounds: ROUNDS, mib: Number(opt.mib), pings: Number(opt.pings), results }));
process.exit(0);
