#!/usr/bin/env node
// The virtio console (hvc0) of a stock Debian Linux, tsvmm against QEMU's virtconsole on the same
// KVM in the same run: guest → host throughput (the guest's shell writes KIB kibibytes of text to
// hvc0 in 64-byte lines, timed on the host from the command to the end marker) and the round trip of a short
// command typed into the console (host writes `echo`, waits for its output). Each VMM boots the
// kernel and initramfs of `npm run guest` with `console=hvc0`, the console on its stdio:
//   tsvmm  --serial off --console tty
//   QEMU   -M microvm -device virtio-serial-device -chardev stdio -device virtconsole
// Rounds alternate the order of the VMMs. Prints a markdown table and one JSON line.
//
//   node bench/console-bench.mjs [--rounds 1] [--kib 256] [--pings 20]
// (Nested under TCG both VMMs move tens of KiB/s: a line is a console write, a write a round trip.)
// Needs `npm run build`, `npm run guest` and qemu-system-x86_64; on a host without /dev/kvm run it
// nested: node tools/nested/run.mjs -- node bench/console-bench.mjs
import { parseArgs } from 'node:util';
import { booted, median, qemuCommand, requireInputs, start, tsvmmCommand, waitFor } from './lib/linux-console.mjs';

const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string', default: '1' },
    kib: { type: 'string', default: '256' },
    pings: { type: 'string', default: '20' },
  },
});
const ROUNDS = Number(opt.rounds);
const KIB = Number(opt.kib);
const PINGS = Number(opt.pings);
requireInputs('console-bench');
const CMDLINE = 'console=hvc0 panic=-1 nmi_watchdog=0';
const COMMANDS = {
  tsvmm: tsvmmCommand(CMDLINE, ['--serial', 'off', '--console', 'tty']),
  qemu: qemuCommand(CMDLINE, ['-device', 'virtio-serial-device', '-chardev', 'stdio,id=c0,signal=off', '-device', 'virtconsole,chardev=c0']),
};

async function measure(name) {
  const p = start(name, COMMANDS[name]);
  try {
    await booted(p);
    // Throughput: KIB KiB of 'x' lines (64 bytes each) through the console.
    p.out = '';
    const before = p.bytes;
    const t0 = performance.now();
    p.child.stdin.write(`dd if=/dev/zero bs=1024 count=${KIB} 2>/dev/null | tr '\\0' x | fold -w 63; echo "@@DONE$((2))"\n`);
    await waitFor(p, /@@DONE2/);
    const seconds = (performance.now() - t0) / 1000;
    const kibps = (p.bytes - before) / 1024 / seconds;
    // Round trips of a short command.
    const rtts = [];
    for (let i = 0; i < PINGS; i++) {
      p.out = '';
      const t = performance.now();
      p.child.stdin.write(`echo "@@P$((${i} + 1000))"\n`);
      await waitFor(p, new RegExp(`@@P${i + 1000}`), 60_000);
      rtts.push(performance.now() - t);
    }
    return { kibps, rttMs: median(rtts), rttMax: Math.max(...rtts) };
  } finally {
    p.child.kill('SIGKILL');
  }
}

const results = { tsvmm: [], qemu: [] };
for (let r = 0; r < ROUNDS; r++) {
  for (const name of r % 2 === 0 ? ['tsvmm', 'qemu'] : ['qemu', 'tsvmm']) results[name].push(await measure(name));
}
const summary = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, {
  kibps: median(v.map((x) => x.kibps)), rttMs: median(v.map((x) => x.rttMs)), rttMax: Math.max(...v.map((x) => x.rttMax)),
}]));
console.log(`\n| virtio console (hvc0), ${KIB} KiB out, ${PINGS} round trips, ${ROUNDS} round(s) | tsvmm | QEMU virtconsole | ratio |`);
console.log('|---|---:|---:|---:|');
console.log(`| guest → host throughput (KiB/s) | ${summary.tsvmm.kibps.toFixed(1)} | ${summary.qemu.kibps.toFixed(1)} | ${(summary.tsvmm.kibps / summary.qemu.kibps).toFixed(2)} |`);
console.log(`| command round trip, median (ms) | ${summary.tsvmm.rttMs.toFixed(1)} | ${summary.qemu.rttMs.toFixed(1)} | ${(summary.tsvmm.rttMs / summary.qemu.rttMs).toFixed(2)} |`);
console.log(`| command round trip, max (ms) | ${summary.tsvmm.rttMax.toFixed(1)} | ${summary.qemu.rttMax.toFixed(1)} | |`);
console.log(JSON.stringify({ bench: 'console', kib: KIB, pings: PINGS, rounds: ROUNDS, results }));
