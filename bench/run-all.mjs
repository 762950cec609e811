#!/usr/bin/env node
// Runs every benchmark one after another (they must not overlap: each one alternates tsvmm and
// its peer on a 2-core machine). `npm run bench`, or `node bench/run-all.mjs boot blk` for some.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const BENCHES = {
  boot: 'boot-bench.mjs',
  'pause-resume': 'pause-resume.mjs',
  'snapshot-format': 'snapshot-format-bench.mjs',
  snapshot: 'snapshot-bench.mjs',
  blk: 'blk-bench.mjs',
  qcow2: 'qcow2-bench.mjs',
  'qcow2-guest': 'qcow2-guest-bench.mjs',
  'disk-snapshot': 'disk-snapshot-bench.mjs',
  console: 'console-bench.mjs',
  rng: 'rng-bench.mjs',
  vsock: 'vsock-bench.mjs',
};

const wanted = process.argv.slice(2);
for (const name of wanted) {
  if (!(name in BENCHES)) {
    console.error(`run-all: unknown benchmark "${name}" (known: ${Object.keys(BENCHES).join(', ')})`);
    process.exit(2);
  }
}
let failed = 0;
for (const [name, file] of Object.entries(BENCHES)) {
  if (wanted.length > 0 && !wanted.includes(name)) continue;
  console.log(`\n## ${name} (bench/${file})\n`);
  const r = spawnSync(process.execPath, [join(import.meta.dirname, file)], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`run-all: ${file} exited with ${r.status ?? r.signal}`);
    failed++;
  }
}
process.exit(failed === 0 ? 0 : 1);
