#!/usr/bin/env node
// virtio-rng in a stock Debian Linux, tsvmm against QEMU's virtio-rng-device on the same KVM in
// the same run: how fast the guest reads /dev/hwrng (`dd` of KIB KiB, timed on the host from the
// command to its end marker), without a limit and with a limit of LIMIT_KIB KiB/s:
//   tsvmm  --rng src=/dev/urandom[,bw_size=LIMIT,bw_refill_time=1000]
//   QEMU   -object rng-random,filename=/dev/urandom -device virtio-rng-device[,max-bytes=LIMIT,period=1000]
// A limited read should take about (KIB - LIMIT_KIB) / LIMIT_KIB seconds on either VMM (both start
// with a full second's worth). Rounds alternate the order of the VMMs. Prints a markdown table
// and one JSON line.
//
//   node bench/rng-bench.mjs [--rounds 1] [--kib 256] [--limit-kib 32]
// Needs `npm run build`, `npm run guest` and qemu-system-x86_64; on a host without /dev/kvm run it
// nested: node tools/nested/run.mjs -- node bench/rng-bench.mjs
import { parseArgs } from 'node:util';
import { booted, median, qemuCommand, requireInputs, sh, start, tsvmmCommand } from './lib/linux-console.mjs';

const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string', default: '1' },
    kib: { type: 'string', default: '256' },
    'limit-kib': { type: 'string', default: '32' },
  },
});
const ROUNDS = Number(opt.rounds);
const KIB = Number(opt.kib);
const LIMIT = Number(opt['limit-kib']) * 1024;
/** A limited read of three seconds' worth (or all of KIB if less). */
const LIMITED_KIB = Math.min(KIB, (LIMIT / 1024) * 3);
requireInputs('rng-bench');
const CMDLINE = 'console=ttyS0 panic=-1 nmi_watchdog=0';

function command(vmm, limited) {
  if (vmm === 'tsvmm') {
    const rng = `src=/dev/urandom${limited ? `,bw_size=${LIMIT},bw_refill_time=1000` : ''}`;
    return tsvmmCommand(CMDLINE, ['--serial', 'tty', '--rng', rng]);
  }
  return qemuCommand(CMDLINE, ['-serial', 'stdio', '-object', 'rng-random,id=rng0,filename=/dev/urandom',
    '-device', `virtio-rng-device,rng=rng0${limited ? `,max-bytes=${LIMIT},period=1000` : ''}`]);
}

/** KiB/s of `dd` from /dev/hwrng. */
async function measure(vmm, limited) {
  const p = start(vmm, command(vmm, limited));
  try {
    await booted(p);
    const kib = limited ? LIMITED_KIB : KIB;
    const t0 = performance.now();
    await sh(p, `dd if=/dev/hwrng of=/dev/null bs=1024 count=${kib} 2>/dev/null`, 600_000);
    return kib / ((performance.now() - t0) / 1000);
  } finally {
    p.child.kill('SIGKILL');
  }
}

const results = { tsvmm: { open: [], limited: [] }, qemu: { open: [], limited: [] } };
for (let r = 0; r < ROUNDS; r++) {
  for (const vmm of r % 2 === 0 ? ['tsvmm', 'qemu'] : ['qemu', 'tsvmm']) {
    results[vmm].open.push(await measure(vmm, false));
    results[vmm].limited.push(await measure(vmm, true));
  }
}
const m = (vmm, kind) => median(results[vmm][kind]);
console.log(`\n| virtio-rng, /dev/hwrng read by dd, ${ROUNDS} round(s) | tsvmm | QEMU virtio-rng-device | ratio |`);
console.log('|---|---:|---:|---:|');
console.log(`| unlimited, ${KIB} KiB (KiB/s) | ${m('tsvmm', 'open').toFixed(1)} | ${m('qemu', 'open').toFixed(1)} | ${(m('tsvmm', 'open') / m('qemu', 'open')).toFixed(2)} |`);
console.log(`| limited to ${LIMIT / 1024} KiB/s, ${LIMITED_KIB} KiB (KiB/s) | ${m('tsvmm', 'limited').toFixed(1)} | ${m('qemu', 'limited').toFixed(1)} | ${(m('tsvmm', 'limited') / m('qemu', 'limited')).toFixed(2)} |`);
console.log(JSON.stringify({ bench: 'rng', kib: KIB, limit: LIMIT, rounds: ROUNDS, results }));
