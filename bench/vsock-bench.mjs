#!/usr/bin/env node
// virtio-vsock in a stock Debian Linux, tsvmm against QEMU's vhost-vsock-device on the same KVM in
// the same run. The guest runs an echo server (vsock-probe listen 52, in the initramfs); the host
// end (bench/lib/vsock-client.py, the same code for both) measures ROUNDS round trips of 64 bytes
// and the throughput of MIB MiB echoed back:
//   tsvmm  --vsock cid=3,socket=S          host: connect S, "CONNECT 52\n" (hybrid, in the VMM)
//   QEMU   -device vhost-vsock-device      host: AF_VSOCK to CID 3 port 52 (in the host kernel)
// So the ratio is tsvmm's user-space hybrid path against the kernel's vhost path, which is what a
// QEMU user gets. Rounds alternate the order of the VMMs. Prints a markdown table and one JSON line.
//
//   node bench/vsock-bench.mjs [--rounds 1] [--pings 500] [--mib 16]
// Needs `npm run build`, `npm run guest`, qemu-system-x86_64 and python3; on a host without /dev/kvm
// run it nested: node tools/nested/run.mjs -- node bench/vsock-bench.mjs (vhost_vsock is loaded
// from Debian's kernel package when /dev/vhost-vsock is missing).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { alternateRounds, booted, qemuCommand, ratioRow, requireInputs, sh, start, tsvmmCommand } from './lib/linux-console.mjs';

const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string', default: '1' },
    pings: { type: 'string', default: '500' },
    mib: { type: 'string', default: '16' },
  },
});
const ROUNDS = Number(opt.rounds);
const root = resolve(import.meta.dirname, '..');
const CLIENT = join(root, 'bench/lib/vsock-client.py');
const CID = 3;
const PORT = 52;
const CMDLINE = 'console=ttyS0 panic=-1 nmi_watchdog=0';
requireInputs('vsock-bench');

function python(args) {
  const r = spawnSync('python3', [CLIENT, ...args], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`vsock-client ${args.join(' ')}: ${r.stderr || r.error?.message}`);
  return r.stdout;
}

if (!existsSync('/dev/vhost-vsock')) {
  // Debian's kernel package ships no modules.dep: the guest image builder's resolver orders them.
  const list = spawnSync(process.execPath, [join(root, 'guest-images/linux/modules.mjs'), join(root, 'guest-images/out/debian/modules'), 'vhost_vsock'], { encoding: 'utf8' });
  if (list.status !== 0) throw new Error(`modules.mjs: ${list.stderr}`);
  python(['insmod', ...list.stdout.split('\n').filter((l) => l !== '')]);
}
const dir = mkdtempSync(join(tmpdir(), 'vsock-bench-'));

async function measure(vmm) {
  const socketPath = join(dir, `${vmm}.vsock`);
  const p = start(vmm, vmm === 'tsvmm'
    ? tsvmmCommand(CMDLINE, ['--serial', 'tty', '--console', 'off', '--vsock', `cid=${CID},socket=${socketPath}`])
    : qemuCommand(CMDLINE, ['-serial', 'stdio', '-device', `vhost-vsock-device,guest-cid=${CID}`]));
  try {
    await booted(p);
    await sh(p, `vsock-probe listen ${PORT} > /dev/null 2>&1 & true`);
    await new Promise((r) => setTimeout(r, 1000));
    const where = vmm === 'tsvmm' ? ['unix', socketPath] : ['vsock', String(CID)];
    return JSON.parse(python([...where, String(PORT), opt.pings, opt.mib]));
  } finally {
    p.child.kill('SIGKILL');
  }
}

let results;
try {
  results = await alternateRounds('vsock-bench', ROUNDS, measure);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const row = (label, k, digits) => ratioRow(results, label, k, digits);
console.log(`\n| virtio-vsock, host ↔ guest echo server, ${ROUNDS} round(s) | tsvmm (hybrid) | QEMU vhost-vsock | ratio |`);
console.log('|---|---:|---:|---:|');
console.log(row(`round trip, 64 bytes, median of ${opt.pings} (µs)`, 'rtt_median_us', 0));
console.log(row('round trip, p99 (µs)', 'rtt_p99_us', 0));
console.log(row(`echo throughput, ${opt.mib} MiB (MiB/s)`, 'mib_per_s', 2));
console.log(JSON.stringify({ bench: 'vsock', rounds: ROUNDS, pings: Number(opt.pings), mib: Number(opt.mib), results }));
