#!/usr/bin/env node
// Boot latency: from process start to the tiny kernel's first serial line (its banner), and to the
// process's exit, for tsvmm against QEMU `-M microvm` booting the same guest-images/out/tiny.elf:
//   node dist/cli/tsvmm.js --kernel tiny.elf --memory size=128M --cmdline "tiny.exit=0"
//   qemu-system-x86_64 -M microvm,acpi=on -enable-kvm -cpu host -m 128M ... -kernel tiny.elf -append "tiny.exit=0"
// Runs alternate (tsvmm, QEMU, tsvmm, ...) so host noise hits both alike; prints medians, p90 and
// the tsvmm/QEMU ratio as a markdown table. Then, once, where tsvmm's time goes: a child process
// boots the same VM through the dist modules with performance.now() marks (the VMM has no phase
// logging of its own), and another times the KVM/memory/worker primitives cold.
// Needs `npm run build` and `npm run guest`. ITERATIONS=N (default 12), QEMU=path.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = resolve(import.meta.dirname, '..');
const kernel = join(root, 'guest-images/out/tiny.elf');
const tsvmm = join(root, 'dist/cli/tsvmm.js');
const CMDLINE = 'tiny.exit=0';
const BANNER = /^tiny: boot=\S+ cpus=\d+ mem=\d+MiB cmdline=".*"\r?$/;
const ITERATIONS = Number(process.env.ITERATIONS ?? 12);
const QEMU = process.env.QEMU ?? 'qemu-system-x86_64';
const dist = (p) => import(pathToFileURL(join(root, 'dist', p)).href);

// ---------------------------------------------------------------------------------------------
// Child modes: one VM boot with phase marks, and the primitives timed cold. Each runs in a fresh
// process so module loading and first-use costs are those a real `tsvmm` start pays.

async function phasesChild() {
  const marks = [['node started, bench script running', performance.now()]];
  const mark = (name) => marks.push([name, performance.now()]);
  // dist/cli/tsvmm.js imports yargs before anything else can happen; so does this run.
  await Promise.all([import('yargs'), import('yargs/helpers')]);
  mark('yargs imported (as dist/cli/tsvmm.js does)');
  const [{ Vmm }, { vmConfigFromCli }] = await Promise.all([dist('vmm/vmm.js'), dist('vmm/cli-config.js')]);
  mark('dist modules imported (koffi, libc, KVM wrappers, devices)');
  const inside = await instrumentVmBoot();
  const config = vmConfigFromCli({ kernel, memory: 'size=128M', cpus: 'boot=1', serial: 'tty', cmdline: CMDLINE });

  // The serial console goes to process.stdout in Tty mode: catch the banner there, print nothing.
  const realWrite = process.stdout.write.bind(process.stdout);
  let consoleText = '';
  let bannerSeen = false;
  process.stdout.write = (chunk, ...rest) => {
    consoleText += Buffer.from(chunk).toString('latin1');
    if (!bannerSeen && consoleText.includes('\n')) {
      bannerSeen = true;
      mark('first serial line (banner) written');
    }
    const cb = rest.find((a) => typeof a === 'function');
    if (cb) cb();
    return true;
  };

  let resolveEnd;
  const ended = new Promise((r) => (resolveEnd = r));
  const vmm = new Vmm({ onVmEnd: (end) => { mark('guest power-off reported (onVmEnd)'); resolveEnd(end); }, stdinIsConsole: false });
  vmm.subscribe((e) => { if (e.event === 'booting' || e.event === 'booted') mark(`vm event "${e.event}"`); });
  await vmm.create(config);
  mark('vmm.create done');
  await vmm.boot();
  mark('vmm.boot returned (VM built, vCPU threads running)');
  const end = await ended;
  await vmm.dispose();
  mark('vmm.dispose done');
  process.stdout.write = realWrite;
  if (!BANNER.test(consoleText.split('\n')[0] ?? '')) throw new Error(`unexpected console output: ${JSON.stringify(consoleText)}`);
  realWrite(JSON.stringify({ marks, end, inside: [...inside.entries()] }) + '\n');
  process.exit(0);
}

/**
 * Wraps the methods VmBuilder.boot calls (classes from the same dist modules the VMM uses, so the
 * wrappers see its calls) to total their time and count. Measurement only: behaviour is unchanged.
 */
async function instrumentVmBoot() {
  const totals = new Map();
  const add = (label, ms) => {
    const t = totals.get(label) ?? { ms: 0, calls: 0 };
    t.ms += ms;
    t.calls += 1;
    totals.set(label, t);
  };
  const wrap = (owner, name, label) => {
    const original = owner[name];
    if (typeof original !== 'function') throw new Error(`bench: ${label} is not a function in dist (renamed?)`);
    owner[name] = function (...args) {
      const t0 = performance.now();
      const v = original.apply(this, args);
      if (v instanceof Promise) return v.finally(() => add(label, performance.now() - t0));
      add(label, performance.now() - t0);
      return v;
    };
  };
  const [{ VmBuilder }, { Kvm }, { VmFd }, { VcpuFd }, { Platform }, { VcpuThread }] = await Promise.all([
    dist('vmm/builder.js'), dist('kvm/system.js'), dist('kvm/vm.js'), dist('kvm/vcpu.js'), dist('vmm/platform.js'), dist('vmm/vcpu-thread.js'),
  ]);
  wrap(Kvm, 'open', 'Kvm.open');
  wrap(VmBuilder, 'createKvmVm', 'KVM VM + TSS + irqchip + PIT2 (VmBuilder.createKvmVm)');
  wrap(VmBuilder, 'registerMemory', 'KVM_SET_USER_MEMORY_REGION (VmBuilder.registerMemory)');
  wrap(Platform, 'create', 'devices (Platform.create)');
  wrap(Kvm.prototype, 'supportedCpuid', 'KVM_GET_SUPPORTED_CPUID');
  wrap(Kvm.prototype, 'msrIndexList', 'KVM_GET_MSR_INDEX_LIST');
  wrap(VmFd.prototype, 'createVcpu', 'KVM_CREATE_VCPU');
  wrap(VcpuFd.prototype, 'getMsrs', 'KVM_GET_MSRS (mostly probeSaveableMsrs, one MSR per call)');
  wrap(VcpuFd.prototype, 'setMsrs', 'KVM_SET_MSRS (mostly probeSaveableMsrs, one MSR per call)');
  wrap(VcpuThread, 'start', 'vCPU worker thread start (VcpuThread.start)');
  return totals;
}

async function primitivesChild() {
  const t = [];
  const time = async (name, fn) => {
    const t0 = performance.now();
    const v = await fn();
    t.push([name, performance.now() - t0]);
    return v;
  };
  const { Kvm } = await time('import dist/kvm/system.js (koffi + libc bindings)', () => dist('kvm/system.js'));
  const { createRamRegions, unmapRegions } = await time('import dist/memory/regions.js', () => dist('memory/regions.js'));
  const kvm = await time('Kvm.open (open /dev/kvm, KVM_GET_API_VERSION)', () => Kvm.open());
  await time('KVM_GET_SUPPORTED_CPUID', () => kvm.supportedCpuid());
  const vm = await time('KVM_CREATE_VM', () => kvm.createVm());
  await time('KVM_CREATE_IRQCHIP + KVM_CREATE_PIT2', () => { vm.createIrqchip(); vm.createPit2(); });
  const regions = await time('createRamRegions(128M) (memfd + mmap)', () => createRamRegions(128 * 1024 * 1024));
  await time('KVM_SET_USER_MEMORY_REGION', () => { for (const r of regions) vm.setUserMemoryRegion(r.index, r.guestBase, r.size, r.hostAddress); });
  const vcpu = await time('KVM_CREATE_VCPU', () => vm.createVcpu(0));
  const { Worker } = await import('node:worker_threads');
  await time('a worker_thread starting (empty script, until "online")', () => new Promise((res, rej) => {
    const w = new Worker('', { eval: true });
    w.once('online', () => { void w.terminate().then(res); });
    w.once('error', rej);
  }));
  vcpu.close();
  vm.close();
  unmapRegions(regions);
  kvm.close();
  process.stdout.write(JSON.stringify(t) + '\n');
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// Parent: alternating end-to-end runs.

/** Starts a command; resolves with ms to the first complete stdout line and to exit, and the line. */
function timeRun(cmd, args) {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let firstLineMs;
    let firstLine;
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.setEncoding('latin1').on('data', (d) => {
      if (firstLineMs === undefined) {
        out += d;
        const nl = out.indexOf('\n');
        if (nl >= 0) {
          firstLineMs = performance.now() - t0;
          firstLine = out.slice(0, nl).replace(/\r$/, '');
        }
      }
    });
    child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ firstLineMs, exitMs: performance.now() - t0, firstLine, code, signal, stderr: err });
    });
  });
}

const contenders = {
  tsvmm: {
    run: () => timeRun(process.execPath, [tsvmm, '--kernel', kernel, '--memory', 'size=128M', '--serial', 'tty', '--cmdline', CMDLINE]),
    // tsvmm exits with the guest's power-off status.
    expectedCode: 0,
  },
  qemu: {
    run: () => timeRun(QEMU, [
      '-M', 'microvm,acpi=on', '-enable-kvm', '-cpu', 'host', '-m', '128M', '-smp', '1',
      '-nographic', '-nodefaults', '-serial', 'stdio', '-no-reboot',
      '-device', 'isa-debug-exit,iobase=0xf4,iosize=4', '-kernel', kernel, '-append', CMDLINE,
    ]),
    // isa-debug-exit makes QEMU exit with (status << 1) | 1.
    expectedCode: 1,
  },
};

function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  // Nearest-rank percentiles; the median of an even count is the mean of the middle two.
  const rank = (q) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
  const mid = s.length / 2;
  const median = s.length % 2 === 1 ? s[Math.floor(mid)] : (s[mid - 1] + s[mid]) / 2;
  return { n: s.length, min: s[0], median, p90: rank(0.9), max: s[s.length - 1] };
}

const f1 = (x) => x.toFixed(1);

async function runChild(mode) {
  const r = await timeRunAll(process.execPath, [import.meta.filename, mode]);
  if (r.code !== 0) throw new Error(`bench child ${mode} failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Like timeRun but keeps all of stdout (for the JSON the child modes print). */
function timeRunAll(cmd, args) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('exit', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

async function main() {
  for (const [file, how] of [[tsvmm, 'npm run build'], [kernel, 'npm run guest']]) {
    if (!existsSync(file)) {
      console.error(`boot bench: ${file} is missing; run \`${how}\` first`);
      process.exit(2);
    }
  }
  if (!existsSync('/dev/kvm')) {
    console.error('boot bench: /dev/kvm does not exist; nothing to measure');
    process.exit(2);
  }

  const samples = { tsvmm: { first: [], exit: [] }, qemu: { first: [], exit: [] } };
  const nodeExit = [];
  // One unmeasured warm-up each: page cache for node, QEMU and its firmware blobs.
  for (const c of Object.values(contenders)) await c.run();
  for (let i = 0; i < ITERATIONS; i++) {
    for (const [name, c] of Object.entries(contenders)) {
      const r = await c.run();
      if (r.firstLineMs === undefined || !BANNER.test(r.firstLine) || r.code !== c.expectedCode) {
        throw new Error(`${name} run ${i}: no banner or unexpected status ${r.code}/${r.signal}; first line ${JSON.stringify(r.firstLine)}; stderr ${r.stderr}`);
      }
      samples[name].first.push(r.firstLineMs);
      samples[name].exit.push(r.exitMs);
    }
    // Reference: what any Node.js program pays just to start and stop on this host right now.
    const bare = await timeRun(process.execPath, ['-e', '']);
    nodeExit.push(bare.exitMs);
  }

  const rows = [
    ['process start → banner', 'first'],
    ['process start → exit', 'exit'],
  ];
  console.log(`## Boot: tiny.elf, 1 vCPU, 128 MiB, \`${CMDLINE}\` — ${ITERATIONS} alternating runs each (ms)\n`);
  console.log('| measure | tsvmm median | tsvmm p90 | QEMU microvm median | QEMU p90 | tsvmm / QEMU (median) |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const [label, key] of rows) {
    const a = stats(samples.tsvmm[key]);
    const b = stats(samples.qemu[key]);
    console.log(`| ${label} | ${f1(a.median)} | ${f1(a.p90)} | ${f1(b.median)} | ${f1(b.p90)} | ${(a.median / b.median).toFixed(2)}× |`);
  }
  const bare = stats(nodeExit);
  console.log(`| reference: \`node -e ''\` start → exit | ${f1(bare.median)} | ${f1(bare.p90)} | | | |`);
  const minMax = (name, key) => { const s = stats(samples[name][key]); return `${f1(s.min)}–${f1(s.max)}`; };
  console.log(`\nRanges (min–max): tsvmm banner ${minMax('tsvmm', 'first')}, exit ${minMax('tsvmm', 'exit')}; ` +
    `QEMU banner ${minMax('qemu', 'first')}, exit ${minMax('qemu', 'exit')}.`);

  const { marks, inside } = await runChild('--phases');
  console.log('\n## Where tsvmm\'s time goes (one cold run, in-process performance.now() marks; 0 = node process start)\n');
  console.log('| phase ends | at (ms) | phase (ms) |');
  console.log('|---|---:|---:|');
  let prev = 0;
  for (const [name, at] of marks) {
    console.log(`| ${name} | ${f1(at)} | ${f1(at - prev)} |`);
    prev = at;
  }

  console.log('\nInside "booting" → "booted" (VmBuilder.boot), totals of the calls it makes:\n');
  console.log('| call | calls | ms |');
  console.log('|---|---:|---:|');
  for (const [name, { ms, calls }] of inside) console.log(`| ${name} | ${calls} | ${f1(ms)} |`);

  const prims = await runChild('--primitives');
  console.log('\n## Primitives, cold, in a fresh process (ms)\n');
  console.log('| step | ms |');
  console.log('|---|---:|');
  for (const [name, ms] of prims) console.log(`| ${name} | ${ms.toFixed(2)} |`);
}

const mode = process.argv[2];
if (mode === '--phases') await phasesChild();
else if (mode === '--primitives') await primitivesChild();
else await main();
