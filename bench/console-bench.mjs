#!/usr/bin/env node
// The virtio console (hvc0) of a stock Debian Linux, tsvmm against QEMU's virtconsole on the same
// KVM in the same run: guest → host throughput (the guest's shell writes MIB mebibytes of text to
// hvc0, timed on the host from the command to the end marker) and the round trip of a short
// command typed into the console (host writes `echo`, waits for its output). Each VMM boots the
// kernel and initramfs of `npm run guest` with `console=hvc0`, the console on its stdio:
//   tsvmm  --serial off --console tty
//   QEMU   -M microvm -device virtio-serial-device -chardev stdio -device virtconsole
// Rounds alternate the order of the VMMs. Prints a markdown table and one JSON line.
//
//   node bench/console-bench.mjs [--rounds 1] [--mib 4] [--pings 20]
// Needs `npm run build`, `npm run guest` and qemu-system-x86_64; on a host without /dev/kvm run it
// nested: node tools/nested/run.mjs -- node bench/console-bench.mjs
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const root = resolve(import.meta.dirname, '..');
const linux = join(root, 'guest-images/out/linux');
const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string', default: '1' },
    mib: { type: 'string', default: '4' },
    pings: { type: 'string', default: '20' },
  },
});
const ROUNDS = Number(opt.rounds);
const MIB = Number(opt.mib);
const PINGS = Number(opt.pings);
const tsvmm = join(root, 'dist/cli/tsvmm.js');
const kernel = join(linux, 'vmlinux');
const initramfs = join(linux, 'initramfs.cpio.gz');
for (const [f, how] of [[tsvmm, 'npm run build'], [kernel, 'npm run guest'], [initramfs, 'npm run guest']]) {
  if (!existsSync(f)) {
    console.error(`console-bench: ${f} is missing; run \`${how}\` first`);
    process.exit(2);
  }
}
const CMDLINE = 'console=hvc0 panic=-1 nmi_watchdog=0';
const COMMANDS = {
  tsvmm: [process.execPath, tsvmm, '--kernel', kernel, '--initramfs', initramfs, '--memory', 'size=256M', '--serial', 'off', '--console', 'tty', '--cmdline', CMDLINE],
  qemu: ['qemu-system-x86_64', '-M', 'microvm', '-enable-kvm', '-cpu', 'host', '-m', '256M', '-smp', '1', '-display', 'none', '-nodefaults', '-no-reboot',
    '-kernel', kernel, '-initrd', initramfs, '-append', CMDLINE,
    '-device', 'virtio-serial-device', '-chardev', 'stdio,id=c0,signal=off', '-device', 'virtconsole,chardev=c0'],
};

function start(name) {
  const [cmd, ...args] = COMMANDS[name];
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.on('error', () => {});
  const p = { child, out: '', bytes: 0, err: '', waiters: [] };
  const wake = () => { const w = p.waiters; p.waiters = []; w.forEach((f) => f()); };
  child.stdout.on('data', (d) => { p.bytes += d.length; p.out += d.toString('latin1'); if (p.out.length > 1 << 20) p.out = p.out.slice(-65536); wake(); });
  child.stderr.setEncoding('utf8').on('data', (d) => { p.err += d; });
  child.on('exit', wake);
  return p;
}

async function waitFor(p, re, timeoutMs = 600_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = p.out.replace(/\r/g, '').match(re);
    if (m) return m;
    if (p.child.exitCode !== null) throw new Error(`exited (${p.child.exitCode}) waiting for ${re}\n${p.out.slice(-1500)}\n${p.err.slice(-1500)}`);
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timed out waiting for ${re}\n${p.out.slice(-1500)}\n${p.err.slice(-1500)}`);
    await new Promise((r) => { const t = setTimeout(r, left); p.waiters.push(() => { clearTimeout(t); r(); }); });
  }
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

async function measure(name) {
  const p = start(name);
  try {
    await waitFor(p, /linux: init ok/);
    p.child.stdin.write('dmesg -n 1; echo "@@READY$((1))"\n');
    await waitFor(p, /@@READY1/);
    // Throughput: MIB MiB of 'x' lines (64 bytes each) through the console.
    p.out = '';
    const before = p.bytes;
    const t0 = performance.now();
    p.child.stdin.write(`dd if=/dev/zero bs=1048576 count=${MIB} 2>/dev/null | tr '\\0' x | fold -w 63; echo "@@DONE$((2))"\n`);
    await waitFor(p, /@@DONE2/);
    const seconds = (performance.now() - t0) / 1000;
    const mibps = (p.bytes - before) / (1 << 20) / seconds;
    // Round trips of a short command.
    const rtts = [];
    for (let i = 0; i < PINGS; i++) {
      p.out = '';
      const t = performance.now();
      p.child.stdin.write(`echo "@@P$((${i} + 1000))"\n`);
      await waitFor(p, new RegExp(`@@P${i + 1000}`));
      rtts.push(performance.now() - t);
    }
    return { mibps, rttMs: median(rtts), rttMax: Math.max(...rtts) };
  } finally {
    p.child.kill('SIGKILL');
  }
}

const results = { tsvmm: [], qemu: [] };
for (let r = 0; r < ROUNDS; r++) {
  for (const name of r % 2 === 0 ? ['tsvmm', 'qemu'] : ['qemu', 'tsvmm']) results[name].push(await measure(name));
}
const summary = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, {
  mibps: median(v.map((x) => x.mibps)), rttMs: median(v.map((x) => x.rttMs)), rttMax: Math.max(...v.map((x) => x.rttMax)),
}]));
console.log(`\n| virtio console (hvc0), ${MIB} MiB out, ${PINGS} round trips, ${ROUNDS} round(s) | tsvmm | QEMU virtconsole | ratio |`);
console.log('|---|---:|---:|---:|');
console.log(`| guest → host throughput (MiB/s) | ${summary.tsvmm.mibps.toFixed(2)} | ${summary.qemu.mibps.toFixed(2)} | ${(summary.tsvmm.mibps / summary.qemu.mibps).toFixed(2)} |`);
console.log(`| command round trip, median (ms) | ${summary.tsvmm.rttMs.toFixed(1)} | ${summary.qemu.rttMs.toFixed(1)} | ${(summary.tsvmm.rttMs / summary.qemu.rttMs).toFixed(2)} |`);
console.log(`| command round trip, max (ms) | ${summary.tsvmm.rttMax.toFixed(1)} | ${summary.qemu.rttMax.toFixed(1)} | |`);
console.log(JSON.stringify({ bench: 'console', mib: MIB, pings: PINGS, rounds: ROUNDS, results }));
