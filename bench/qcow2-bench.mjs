#!/usr/bin/env node
// tsvmm-img vs qemu-img on the same 1 GiB qcow2 image: convert -O raw, commit of an overlay with
// 256 MiB written, check, resize +1G, convert -c -O qcow2. Medians of N alternating runs (default 3). Runs dist/ (npm run build).
// Usage: [BENCH_DIR=dir] [VERBOSE=1] node bench/qcow2-bench.mjs [runs]
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const runs = Number(process.argv[2] ?? 3);
const root = resolve(import.meta.dirname, '..');
const tsvmmImg = [process.execPath, join(root, 'dist/cli/tsvmm-img.js')];
const qemuImg = ['qemu-img'];
// BENCH_DIR=/dev/shm takes the host disk out of the numbers (on a shared virtual disk, writeback
// of earlier steps makes single runs vary by seconds).
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'qcow2-bench-'));
const sh = (cmd, ...args) => execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
const at = (n) => join(dir, n);

function timed(argv) {
  const t = process.hrtime.bigint();
  try {
    execFileSync(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] });
  } catch (e) {
    if (e.status !== 0 && argv.includes('check') && e.status !== 3) throw e; // check exits 3 on leaks only
  }
  return Number(process.hrtime.bigint() - t) / 1e6;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

try {
  // The image: 1 GiB virtual, 512 MiB of data in 64 KiB clusters, some of it in scattered runs.
  sh('qemu-img', 'create', '-q', '-f', 'qcow2', at('base.qcow2'), '1G');
  sh('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x5a 0 384M', '-c', 'write -P 0x6b 512M 64M', '-c', 'write -P 0x7c 900M 64M', at('base.qcow2'));
  // Overlay for commit: 256 MiB written, half overwriting base data, half new.
  sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', at('top.qcow2'));
  sh('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x11 128M 128M', '-c', 'write -P 0x22 640M 128M', at('top.qcow2'));
  copyFileSync(at('base.qcow2'), at('base.pristine'));
  copyFileSync(at('top.qcow2'), at('top.pristine'));

  const results = { convert: { tsvmm: [], qemu: [] }, commit: { tsvmm: [], qemu: [] }, check: { tsvmm: [], qemu: [] }, 'resize +1G': { tsvmm: [], qemu: [] }, 'convert -c -O qcow2': { tsvmm: [], qemu: [] } };
  for (let i = 0; i < runs; i++) {
    for (const [name, tool] of i % 2 === 0 ? [['tsvmm', tsvmmImg], ['qemu', qemuImg]] : [['qemu', qemuImg], ['tsvmm', tsvmmImg]]) {
      // Every timed step starts with no dirty pages: writeback left by the previous step (up to
      // 512 MiB) would otherwise be charged to whichever tool happens to run next.
      rmSync(at('out.raw'), { force: true });
      sh('sync');
      results.convert[name].push(timed([...tool, 'convert', '-O', 'raw', at('base.qcow2'), at('out.raw')]));
      rmSync(at('out.raw'), { force: true });
      sh('sync');
      results.check[name].push(timed([...tool, 'check', at('base.qcow2')]));
      copyFileSync(at('base.pristine'), at('r.qcow2'));
      sh('sync');
      results['resize +1G'][name].push(timed([...tool, 'resize', at('r.qcow2'), '+1G']));
      rmSync(at('out.qcow2'), { force: true });
      sh('sync');
      results['convert -c -O qcow2'][name].push(timed([...tool, 'convert', '-c', '-O', 'qcow2', at('base.qcow2'), at('out.qcow2')]));
      rmSync(at('out.qcow2'), { force: true });
      copyFileSync(at('base.pristine'), at('c-base.qcow2'));
      copyFileSync(at('top.pristine'), at('c-top.qcow2'));
      sh('qemu-img', 'rebase', '-u', '-b', 'c-base.qcow2', '-F', 'qcow2', at('c-top.qcow2'));
      sh('sync');
      results.commit[name].push(timed([...tool, 'commit', at('c-top.qcow2')]));
    }
  }
  sh('qemu-img', 'compare', at('base.pristine'), at('base.qcow2'));
  const min = (xs) => Math.min(...xs);
  const rows = Object.entries(results).map(([op, r]) => ({
    op, tsvmm: median(r.tsvmm), qemu: median(r.qemu), tsvmmMin: min(r.tsvmm), qemuMin: min(r.qemu),
  }));
  if (process.env.VERBOSE) console.log(JSON.stringify(results));
  // Single runs on a shared host vary by up to 4x (page-cache and writeback state left by the
  // previous steps); the best run of each tool is printed next to the median.
  console.log(`qcow2 bench in ${dir} (1 GiB image, 512 MiB data; commit: 256 MiB overlay), ${runs} alternating runs, ms`);
  console.log('| operation | tsvmm-img median (best) | qemu-img median (best) | ratio of medians | ratio of bests |');
  console.log('|---|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.op} | ${r.tsvmm.toFixed(0)} (${r.tsvmmMin.toFixed(0)}) | ${r.qemu.toFixed(0)} (${r.qemuMin.toFixed(0)}) | ${(r.tsvmm / r.qemu).toFixed(2)} | ${(r.tsvmmMin / r.qemuMin).toFixed(2)} |`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
