#!/usr/bin/env node
// Guest 4 KiB random write and read IOPS through virtio-blk on a qcow2 image against a raw image
// of the same size, measured by the tiny kernel (tiny.blk=randwrite:N,randread:N), tsvmm only
// (qemu-img's engine is not in the guest path). Each run starts from a fresh image: the qcow2
// one is empty, so its writes allocate clusters (the expensive case), and a second pass
// ("rewrite") measures writes to clusters that already exist; a fresh overlay on a raw base full of
// data measures the clone case (each write copies a cluster up). Alternating, medians, ratios.
// Needs `npm run build` and `npm run guest`. RUNS (default 5), COUNT (default 8000), IMAGE_MIB (256), TSVMM_DIST.
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const RUNS = Number(process.env.RUNS ?? 5);
const COUNT = Number(process.env.COUNT ?? 8000);
const IMAGE_MIB = Number(process.env.IMAGE_MIB ?? 256);
// TSVMM_DIST: another build of tsvmm to measure (default dist/), e.g. to compare two versions.
const dist = resolve(process.env.TSVMM_DIST ?? join(root, 'dist'));
const dir = mkdtempSync(join(tmpdir(), 'tsvmm-qcow2-guest-'));

function guest(image, ops) {
  const r = spawnSync(process.execPath, [join(dist, 'cli/tsvmm.js'), '--kernel', join(root, 'guest-images/out/tiny.elf'),
    '--memory', 'size=128M', '--serial', 'tty', '--disk', `path=${image},backing_files=on`, '--cmdline', `tiny.blk=${ops}`], { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`tsvmm exited ${r.status}: ${r.stdout.slice(-500)} ${r.stderr}`);
  const iops = {};
  for (const m of r.stdout.matchAll(/blk: (randwrite|randread) (\d+) bytes (\d+) us/g)) {
    iops[m[1]] = (Number(m[2]) / 4096) / (Number(m[3]) / 1e6);
  }
  return iops;
}

function freshImage(format) {
  const path = join(dir, `disk.${format}`);
  rmSync(path, { force: true });
  if (format === 'raw') {
    writeFileSync(path, '');
    truncateSync(path, IMAGE_MIB << 20);
  } else {
    const r = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', path, `${IMAGE_MIB}M`]);
    if (r.status !== 0) throw new Error(`qemu-img create failed: ${r.stderr}`);
  }
  return path;
}

/** A raw base full of data, and a fresh qcow2 overlay on it: the image a clone starts from. */
function baseImage() {
  const path = join(dir, 'base.raw');
  const block = Buffer.alloc(1 << 20);
  for (let i = 0; i < block.length; i++) block[i] = (i * 131 + 7) & 0xff;
  const fd = openSync(path, 'w');
  for (let m = 0; m < IMAGE_MIB; m++) writeSync(fd, block);
  closeSync(fd);
  return path;
}

function freshOverlay(base) {
  const path = join(dir, 'overlay.qcow2');
  rmSync(path, { force: true });
  const r = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', path]);
  if (r.status !== 0) throw new Error(`qemu-img create failed: ${r.stderr}`);
  return path;
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const samples = { raw: [], qcow2: [], qcow2Rewrite: [], overlay: [] };
try {
  const base = baseImage();
  for (let i = 0; i < RUNS; i++) {
    samples.overlay.push(guest(freshOverlay(base), `randwrite:${COUNT},randread:${COUNT}`));
    samples.raw.push(guest(freshImage('raw'), `randwrite:${COUNT},randread:${COUNT}`));
    const q = freshImage('qcow2');
    samples.qcow2.push(guest(q, `randwrite:${COUNT},randread:${COUNT}`));
    samples.qcow2Rewrite.push(guest(q, `randwrite:${COUNT}`));
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const m = (k, op) => median(samples[k].map((s) => s[op]));
const rows = [
  ['4 KiB random write, new clusters', m('raw', 'randwrite'), m('qcow2', 'randwrite')],
  ['4 KiB random write, allocated clusters', m('raw', 'randwrite'), m('qcow2Rewrite', 'randwrite')],
  ['4 KiB random read', m('raw', 'randread'), m('qcow2', 'randread')],
  ['4 KiB random write, new overlay on a raw base (copy-on-write)', m('raw', 'randwrite'), m('overlay', 'randwrite')],
  ['4 KiB random read, overlay over a raw base', m('raw', 'randread'), m('overlay', 'randread')],
];
console.log(`\nguest IOPS, ${RUNS} alternating runs, ${COUNT} requests, ${IMAGE_MIB} MiB image, 32 in flight\n`);
console.log('| workload | raw IOPS | qcow2 IOPS | qcow2 / raw |');
console.log('|---|---:|---:|---:|');
for (const [name, raw, q] of rows) console.log(`| ${name} | ${raw.toFixed(0)} | ${q.toFixed(0)} | ${(q / raw).toFixed(2)} |`);
