#!/usr/bin/env node
// virtio-blk throughput, tsvmm against QEMU microvm, measured by the tiny kernel's own workload
// (guest-images/README.md): sequential write and read MB/s in 64 KiB requests (32 in flight) and
// 4 KiB random-read IOPS (32 in flight), timed by the guest's TSC. Same image, same kernel, same
// command line; runs alternate between the two VMMs (and which goes first) so drifting host load
// hits both alike; medians and ratios are printed as a markdown table.
//
// Cache modes are matched: tsvmm does buffered I/O through the host page cache, so QEMU runs with
// its default cache=writeback (buffered) and aio=threads, both spelled out on its command line.
// The image is fully allocated (written with data before the first run), so no run reads holes.
//
//   node bench/blk-bench.mjs                    # needs dist/ (npx tsc) and guest-images/out/tiny.elf
//   RUNS=7 IMAGE_MIB=512 SEQ_MIB=256 RANDREAD=20000 node bench/blk-bench.mjs
//   ONLY=tsvmm node bench/blk-bench.mjs         # skip QEMU (profiling tsvmm alone)
// Extra tsvmm arguments: TSVMM_ARGS="..." (space-separated). The image lives in a fresh directory
// under IMAGE_DIR (default the OS temp dir, /tmp; /dev/shm takes the host disk out of the numbers).
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, rmSync, writeSync, closeSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const RUNS = Number(process.env.RUNS ?? 5);
const IMAGE_MIB = Number(process.env.IMAGE_MIB ?? 512);
const SEQ_MIB = Number(process.env.SEQ_MIB ?? 256);
const RANDREAD = Number(process.env.RANDREAD ?? 20000);
const ONLY = process.env.ONLY ?? '';
const TSVMM_ARGS = (process.env.TSVMM_ARGS ?? '').split(/\s+/).filter((s) => s.length > 0);
const MEMORY = '256M';
const kernel = join(root, 'guest-images/out/tiny.elf');
const tsvmm = join(root, 'dist/cli/tsvmm.js');
const QEMU = 'qemu-system-x86_64';

for (const [file, how] of [[tsvmm, 'npx tsc -p tsconfig.json'], [kernel, 'make -C guest-images']]) {
  if (!existsSync(file)) {
    console.error(`blk-bench: ${file} is missing; run \`${how}\` first`);
    process.exit(2);
  }
}
if (SEQ_MIB > IMAGE_MIB) {
  console.error(`blk-bench: SEQ_MIB (${SEQ_MIB}) is larger than the image (${IMAGE_MIB} MiB)`);
  process.exit(2);
}

const cmdline = `tiny.blk=seqwrite:${SEQ_MIB},seqread:${SEQ_MIB},randread:${RANDREAD}`;
const IMAGE_DIR = process.env.IMAGE_DIR ?? tmpdir();
const dir = mkdtempSync(join(IMAGE_DIR, 'tsvmm-blk-bench-'));
const image = join(dir, 'disk.raw');

/** Writes the whole image with non-zero data, so both VMMs read allocated blocks. */
function prepareImage() {
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((i * 2654435761) >>> 0, i);
  const fd = openSync(image, 'w');
  try {
    for (let m = 0; m < IMAGE_MIB; m++) writeSync(fd, chunk, 0, chunk.length, m * chunk.length);
  } finally {
    closeSync(fd);
  }
}

const vmms = {
  tsvmm: {
    cmd: process.execPath,
    args: () => [tsvmm, '--kernel', kernel, '--serial', 'tty', '--memory', `size=${MEMORY}`, '--disk', `path=${image}`, '--cmdline', cmdline, ...TSVMM_ARGS],
    guestStatus: (code) => code,
  },
  qemu: {
    cmd: QEMU,
    args: () => [
      '-M', 'microvm,acpi=off', '-enable-kvm', '-cpu', 'host', '-m', MEMORY, '-nographic', '-nodefaults',
      '-serial', 'stdio', '-no-reboot', '-device', 'isa-debug-exit,iobase=0xf4,iosize=4',
      '-global', 'virtio-mmio.force-legacy=false',
      '-drive', `file=${image},format=raw,if=none,id=d0,cache=writeback,aio=threads`,
      '-device', 'virtio-blk-device,drive=d0',
      '-kernel', kernel, '-append', cmdline,
    ],
    // isa-debug-exit: QEMU exits with (status << 1) | 1.
    guestStatus: (code) => (code !== null && code % 2 === 1 ? (code - 1) / 2 : null),
  },
};

/** One VM run: the guest's timings (µs) and the wall time from spawn to exit. */
function runOnce(name) {
  const vmm = vmms[name];
  const started = performance.now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(vmm.cmd, vmm.args(), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    // A hung VMM must not hang the benchmark: 2 minutes is far beyond any run's length.
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { err += d; });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const wallMs = performance.now() - started;
      const status = vmm.guestStatus(code);
      const timings = {};
      for (const m of out.matchAll(/^blk: (seqwrite|seqread|randread) (\d+) bytes (\d+) us\r?$/gm)) {
        timings[m[1]] = { bytes: Number(m[2]), usec: Number(m[3]) };
      }
      if (status !== 0 || Object.keys(timings).length !== 3) {
        reject(new Error(`${name} run failed (exit ${code ?? signal}, guest status ${status}):\n${out.slice(-1500)}\n${err.slice(-1500)}`));
        return;
      }
      resolvePromise({ timings, wallMs });
    });
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

/** MB/s (10^6 bytes per second) = bytes per µs; IOPS = 4 KiB requests per second. */
function metrics(r) {
  return {
    seqwrite: r.timings.seqwrite.bytes / r.timings.seqwrite.usec,
    seqread: r.timings.seqread.bytes / r.timings.seqread.usec,
    randread: (r.timings.randread.bytes / 4096) / (r.timings.randread.usec / 1e6),
    wall: r.wallMs / 1000,
  };
}

const rows = [
  { key: 'seqwrite', label: `sequential write, 64 KiB x32 (MB/s)`, higherIsBetter: true, digits: 0 },
  { key: 'seqread', label: `sequential read, 64 KiB x32 (MB/s)`, higherIsBetter: true, digits: 0 },
  { key: 'randread', label: `random read, 4 KiB x32 (IOPS)`, higherIsBetter: true, digits: 0 },
  { key: 'wall', label: 'whole run, spawn to exit (s)', higherIsBetter: false, digits: 2 },
];

async function main() {
  let qemuVersion = '';
  if (ONLY !== 'tsvmm') {
    try {
      qemuVersion = execFileSync(QEMU, ['--version'], { encoding: 'utf8' }).split('\n')[0];
    } catch {
      console.error(`blk-bench: ${QEMU} is not installed (ONLY=tsvmm runs tsvmm alone)`);
      process.exit(2);
    }
  }
  const names = ONLY === '' ? ['tsvmm', 'qemu'] : [ONLY];
  prepareImage();
  const results = Object.fromEntries(names.map((n) => [n, []]));
  const load0 = loadavg()[0];
  for (let i = 0; i < RUNS; i++) {
    const order = i % 2 === 0 ? names : [...names].reverse();
    for (const n of order) {
      const m = metrics(await runOnce(n));
      results[n].push(m);
      process.stderr.write(`run ${i + 1}/${RUNS} ${n.padEnd(5)}: seqwrite ${m.seqwrite.toFixed(0)} MB/s, seqread ${m.seqread.toFixed(0)} MB/s, randread ${m.randread.toFixed(0)} IOPS, ${m.wall.toFixed(2)} s\n`);
    }
  }

  const med = Object.fromEntries(names.map((n) => [n, Object.fromEntries(rows.map((r) => [r.key, median(results[n].map((x) => x[r.key]))]))]));
  console.log(`\nvirtio-blk, tiny kernel \`${cmdline}\`, ${IMAGE_MIB} MiB raw image in ${IMAGE_DIR}, ${MEMORY} guest RAM, 1 vCPU; ` +
    `medians of ${RUNS} alternating runs; load average ${load0.toFixed(2)} → ${loadavg()[0].toFixed(2)}${qemuVersion ? `; ${qemuVersion}` : ''}\n`);
  if (names.length === 2) {
    console.log('| metric | tsvmm | QEMU microvm | tsvmm / QEMU |');
    console.log('|---|---:|---:|---:|');
    for (const r of rows) {
      const t = med.tsvmm[r.key];
      const q = med.qemu[r.key];
      console.log(`| ${r.label} | ${t.toFixed(r.digits)} | ${q.toFixed(r.digits)} | ${(t / q).toFixed(2)} |`);
    }
  } else {
    console.log(`| metric | ${names[0]} (median) | min | max |`);
    console.log('|---|---:|---:|---:|');
    for (const r of rows) {
      const xs = results[names[0]].map((x) => x[r.key]);
      console.log(`| ${r.label} | ${med[names[0]][r.key].toFixed(r.digits)} | ${Math.min(...xs).toFixed(r.digits)} | ${Math.max(...xs).toFixed(r.digits)} |`);
    }
  }
}

try {
  await main();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
