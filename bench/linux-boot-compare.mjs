#!/usr/bin/env node
// How far a stock Debian kernel gets under tsvmm and under QEMU on the same host in the same
// wall-clock time (issue 2 item 9). Each VMM boots the same kernel, initramfs and command line for
// SECONDS (default 60) of wall time; its serial console is captured with the wall time at which
// every line arrived. A run ends early when the VMM exits or when the guest hits a KVM emulation
// failure (QEMU stops and waits there; tsvmm exits). Prints two markdown tables — how far each run
// got, and the wall time at which each got to the kernel's milestones — and one JSON line.
//
//   [SECONDS_PER_RUN=60] node bench/linux-boot-compare.mjs [--seconds 60] [--rounds 1] [--vmm tsvmm,qemu-microvm,qemu-pc]
//        [--kernel F] [--initramfs F] [--cmdline S] [--cpus 2] [--memory 256M] [--log DIR]
//
// Defaults: the kernel and initramfs of `npm run guest` (guest-images/linux/build.sh) (the uncompressed ELF
// `vmlinux` when present: on a PVM host the bzImage's xz decompressor, run in emulated ring 0, does
// not finish in minutes), and a command line that hides CX16 and XSAVE from the kernel — the
// instructions they enable cannot be emulated here (see docs/linux-guests.md). Rounds alternate the
// order of the VMMs so that load on the shared host hurts none of them systematically.
// Needs `npm run build` (dist/) and qemu-system-x86_64.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const root = resolve(import.meta.dirname, '..');
const linuxDir = join(root, 'guest-images/out/linux');
const DEFAULT_CMDLINE = 'console=ttyS0 earlyprintk=serial,ttyS0,115200 clearcpuid=cx16,xsave linux.poweroff';
const MILESTONES = [
  ['first console line', /./],
  ['Linux version', /Linux version /],
  ['MADT SMP', /Using ACPI \(MADT\) for SMP|found SMP MP-table/],
  ['Kernel command line', /Kernel command line:/],
  ['Memory:', /\] Memory: \d+K/],
  ['console ttyS0', /printk: console \[ttyS0\] enabled/],
  ['x86/fpu', /x86\/fpu: /],
  ['Run /init', /Run \/init as init process/],
  ['linux: init ok', /linux: init ok/],
];

const { values: opt } = parseArgs({
  options: {
    seconds: { type: 'string', default: process.env.SECONDS_PER_RUN ?? '60' },
    rounds: { type: 'string', default: '1' },
    vmm: { type: 'string', default: 'tsvmm,qemu-microvm' },
    kernel: { type: 'string', default: existsSync(join(linuxDir, 'vmlinux')) ? join(linuxDir, 'vmlinux') : join(linuxDir, 'vmlinuz') },
    initramfs: { type: 'string', default: join(linuxDir, 'initramfs.cpio.gz') },
    cmdline: { type: 'string', default: DEFAULT_CMDLINE },
    cpus: { type: 'string', default: '2' },
    memory: { type: 'string', default: '256M' },
    log: { type: 'string' },
  },
});
const seconds = Number(opt.seconds);
const rounds = Number(opt.rounds);
if (!(seconds > 0) || !Number.isInteger(rounds) || rounds < 1) {
  console.error('linux-boot-compare: --seconds must be > 0 and --rounds a positive integer');
  process.exit(2);
}
const tsvmm = join(root, 'dist/cli/tsvmm.js');
for (const [file, how] of [[tsvmm, 'npm run build'], [opt.kernel, 'npm run guest'], [opt.initramfs, 'npm run guest']]) {
  if (!existsSync(file)) {
    console.error(`linux-boot-compare: ${file} is missing; run \`${how}\` first`);
    process.exit(2);
  }
}

const qemuCommon = ['-enable-kvm', '-cpu', 'host', '-smp', opt.cpus, '-m', opt.memory, '-nographic', '-nodefaults', '-serial', 'stdio', '-no-reboot', '-kernel', opt.kernel, '-initrd', opt.initramfs, '-append', opt.cmdline];
const COMMANDS = {
  tsvmm: [process.execPath, tsvmm, '--kernel', opt.kernel, '--initramfs', opt.initramfs, '--cpus', `boot=${opt.cpus}`, '--memory', `size=${opt.memory}`, '--cmdline', opt.cmdline, '--serial', 'tty'],
  'qemu-microvm': ['qemu-system-x86_64', '-M', 'microvm', ...qemuCommon],
  'qemu-pc': ['qemu-system-x86_64', '-M', 'pc', ...qemuCommon],
};
const vmms = opt.vmm.split(',').map((s) => s.trim()).filter(Boolean);
for (const v of vmms) {
  if (!(v in COMMANDS)) {
    console.error(`linux-boot-compare: unknown VMM '${v}'; choose from ${Object.keys(COMMANDS).join(', ')}`);
    process.exit(2);
  }
}

const PRINTK = /^\[\s*(\d+\.\d+)\] (.*)$/;
/** QEMU's register dump after "KVM internal error" ends with the bytes at RIP in <..>. */
const QEMU_CODE = /^Code=.*<([0-9a-f]{2})> ((?:[0-9a-f]{2} ){0,5})/;
const KNOWN_OPCODES = [
  [/^cc/, 'int3'],
  [/^f0 48 0f c7/, 'lock cmpxchg16b'],
  [/^0f 01 ca/, 'clac'],
  [/^(48 )?0f ae (2[89a-f]|6[89a-f]|a[89a-f])/, 'xrstor'],
  [/^(48 )?0f ae (2[0-7]|6[0-7]|a[0-7])/, 'xsave'],
];

function runOnce(vmm) {
  return new Promise((resolvePromise) => {
    const [cmd, ...args] = COMMANDS[vmm];
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = []; // the guest's console (the VMM's stdout)
    const diagnostics = []; // the VMM's own messages (stderr): exit reasons, QEMU's register dump
    let partial = '';
    let partialErr = '';
    let stderr = '';
    let end = 'time budget';
    let finished = false;
    const stop = (why) => {
      if (finished) return;
      finished = true;
      end = why;
      child.kill('SIGINT');
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
    };
    child.stdout.setEncoding('latin1').on('data', (text) => {
      partial += text.replace(/\r/g, '');
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      const at = (performance.now() - t0) / 1000;
      for (const l of parts) lines.push({ at, text: l });
    });
    child.stderr.setEncoding('latin1').on('data', (text) => {
      stderr += text;
      partialErr += text;
      const parts = partialErr.split('\n');
      partialErr = parts.pop() ?? '';
      diagnostics.push(...parts);
      // QEMU stops the VM and waits after an emulation failure; give it time to print its dump.
      if (/KVM internal error|emulation failure/.test(text)) setTimeout(() => stop('emulation failure'), 500).unref();
    });
    const timer = setTimeout(() => stop('time budget'), seconds * 1000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (partial !== '') lines.push({ at: (performance.now() - t0) / 1000, text: partial });
      if (partialErr !== '') diagnostics.push(partialErr);
      if (!finished) end = /KVM internal error/.test(stderr) ? 'emulation failure' : `exited (${code ?? signal})`;
      resolvePromise({ vmm, wall: (performance.now() - t0) / 1000, end, lines, diagnostics });
    });
  });
}

function summarize(run) {
  const kernel = run.lines.filter((l) => PRINTK.test(l.text));
  const last = kernel.at(-1);
  const m = last ? PRINTK.exec(last.text) : null;
  let stuckAt = '';
  for (const l of run.diagnostics) {
    const c = QEMU_CODE.exec(l);
    if (c) {
      const bytes = `${c[1]} ${c[2]}`.trim();
      stuckAt = KNOWN_OPCODES.find(([re]) => re.test(bytes))?.[1] ?? bytes;
    }
  }
  const milestones = {};
  for (const [name, re] of MILESTONES) {
    const hit = run.lines.find((l) => l.text.trim() !== '' && re.test(l.text));
    if (hit) milestones[name] = Number(hit.at.toFixed(1));
  }
  return {
    vmm: run.vmm,
    end: stuckAt ? `${run.end} (${stuckAt})` : run.end,
    wall: Number(run.wall.toFixed(1)),
    lines: run.lines.filter((l) => l.text.trim() !== '').length,
    kernelLines: kernel.length,
    lastKernelLine: m ? m[2] : '(none)',
    lastPrintk: m ? Number(m[1]) : null,
    lastAt: last ? Number(last.at.toFixed(1)) : null,
    initOk: run.lines.some((l) => l.text.includes('linux: init ok')),
    milestones,
  };
}

const cell = (s) => String(s).replace(/\|/g, '\\|').slice(0, 72);
console.log(`linux-boot-compare: ${seconds} s per run, ${rounds} round(s), kernel ${opt.kernel}, ${opt.cpus} vCPUs, ${opt.memory}`);
console.log(`cmdline: ${opt.cmdline}\n`);
const results = [];
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? vmms : [...vmms].reverse();
  for (const v of order) {
    const run = await runOnce(v);
    if (opt.log) {
      mkdirSync(opt.log, { recursive: true });
      writeFileSync(join(opt.log, `${v}-${r}.log`), run.lines.map((l) => `${l.at.toFixed(3)} ${l.text}`).join('\n') + '\n');
      writeFileSync(join(opt.log, `${v}-${r}.stderr`), run.diagnostics.join('\n') + '\n');
    }
    const s = summarize(run);
    results.push(s);
    console.error(`  ${v} round ${r + 1}: ${s.end}, ${s.kernelLines} kernel lines, last at ${s.lastAt} s: ${s.lastKernelLine.slice(0, 60)}`);
  }
}

console.log('| VMM | run ended by | wall s | lines | kernel lines | last kernel line | its printk time | wall s at it | `linux: init ok` |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const s of results) {
  console.log(`| ${s.vmm} | ${s.end} | ${s.wall} | ${s.lines} | ${s.kernelLines} | ${cell(s.lastKernelLine)} | ${s.lastPrintk ?? '-'} | ${s.lastAt ?? '-'} | ${s.initOk ? 'yes' : 'no'} |`);
}
console.log('\nWall seconds from VMM start to each milestone (- = not reached):\n');
console.log(`| VMM | ${MILESTONES.map(([n]) => n).join(' | ')} |`);
console.log(`|---|${MILESTONES.map(() => '---').join('|')}|`);
for (const s of results) console.log(`| ${s.vmm} | ${MILESTONES.map(([n]) => s.milestones[n] ?? '-').join(' | ')} |`);
console.log('\n' + JSON.stringify({ seconds, cmdline: opt.cmdline, kernel: opt.kernel, results }));
