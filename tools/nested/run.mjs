#!/usr/bin/env node
// Runs a command where KVM is: on a host without /dev/kvm, inside a QEMU TCG VM (-cpu max emulates
// AMD SVM with nested paging) that boots Debian's stock kernel, loads kvm_amd, sees this host's
// root over 9p and runs the command in a chroot of it, in the same directory with the same
// environment. The command's output streams back; the exit status is the command's. A watchdog
// turns a VM that runs longer than --timeout in all into a failed run (124) with a message, and a
// nested host that hangs (no output for --idle seconds, or, when asked, none from the command for
// its first seconds) or whose kernel reports a CPU stuck for minutes into status 125, as if it had
// crashed (npm test then reruns the unfinished files). See ../../docs/testing.md.
//
//   node tools/nested/run.mjs [--timeout S] [--idle S] [--memory MiB] [--cpus N] -- CMD [ARG...]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { freemem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const kernel = join(repo, 'guest-images/out/debian/vmlinuz');
const initramfs = join(repo, 'guest-images/out/nested/initramfs.cpio.gz');
const QEMU = 'qemu-system-x86_64';

/** Control lines the nested init prints on the console (everything else is the job's output). */
const STATUS_LINE = /^tsvmm-nested: exit (\d+)\s*$/;
const READY_LINE = /^tsvmm-nested: kvm ready/;
const INIT_FAILED = /^tsvmm-nested: init failed: (.*)$/;
/**
 * The nested host's kernel saying a CPU has not scheduled for N seconds. Under TCG a nested
 * host's CPU was seen stuck for good (the lockup repeated every 26 s for more than 7 minutes):
 * such lines are not progress, and past LOCKUP_LIMIT_S the VM is given up as dead.
 */
const SOFT_LOCKUP = /watchdog: BUG: soft lockup - CPU#\d+ stuck for (\d+)s!/;
const LOCKUP_LIMIT_S = 180;

/** Seconds the kernel line says a CPU has been stuck, or undefined for any other line. */
export function softLockupSeconds(line) {
  const m = SOFT_LOCKUP.exec(line);
  return m === null ? undefined : Number(m[1]);
}

/** What a host can do for KVM tests: run them directly, run them nested, or neither. */
export function kvmMode() {
  if (existsSync('/dev/kvm')) return 'direct';
  if (spawnSync(QEMU, ['--version'], { stdio: 'ignore' }).status === 0) return 'nested';
  return 'none';
}

export const NO_KVM_MESSAGE =
  'tsvmm needs KVM: this host has no /dev/kvm, and no QEMU to run KVM nested under TCG ' +
  '(apt-get install qemu-system-x86 busybox-static cpio)';

/** Builds (once, cached) Debian's kernel and the nested host's initramfs. */
export function prepareNestedHost() {
  const r = spawnSync('bash', [join(here, 'initramfs.sh')], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error('could not build the nested-KVM host (tools/nested/initramfs.sh failed)');
}

const shellQuote = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

/** Variables that describe the outer shell rather than the job; the chroot sets its own. */
const NOT_PASSED = new Set(['_', 'PWD', 'OLDPWD', 'SHLVL', 'TERM', 'COLUMNS', 'LINES']);

/** Opens /dev/kvm, creates a VM (KVM_CREATE_VM = _IO(0xAE, 1)) and keeps it until killed. */
const HOLD_KVM_VM = "import fcntl, os, signal; kvm = os.open('/dev/kvm', os.O_RDWR); vm = fcntl.ioctl(kvm, 0xAE01, 0); signal.pause()";

function jobScript(argv, cwd, env) {
  const exports = Object.entries(env)
    .filter(([k, v]) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) && !NOT_PASSED.has(k) && v !== undefined)
    .map(([k, v]) => `export ${k}=${shellQuote(v)}`);
  return [
    '# written by tools/nested/run.mjs',
    ...exports,
    'export TSVMM_NESTED=1',
    // Hold one KVM VM for the whole job. The first VM a host creates and the last it destroys
    // make KVM flip a static key (preempt notifiers), which live-patches the kernel's scheduler;
    // under TCG that patching was seen to livelock both CPUs for minutes (soft lockups in
    // finish_task_switch, KVM_CREATE_VM on the stack). With a VM always open it never flips.
    `python3 -c ${shellQuote(HOLD_KVM_VM)} &`,
    `cd ${shellQuote(cwd)} || exit 125`,
    // Through a pipe: the job sees no terminal (no interactive redraws on a serial console).
    `${argv.map(shellQuote).join(' ')} </dev/null 2>&1 | cat`,
    'exit ${PIPESTATUS[0]}',
    '',
  ].join('\n');
}

/**
 * Runs argv nested; resolves with its exit status: 124 when it ran past its time limit or was
 * interrupted, 125 when the nested host failed before or around the job (it crashed, locked up, or
 * hung without output).
 */
export async function runNested(argv, options = {}) {
  const cwd = options.cwd ?? process.cwd();
  const timeoutS = options.timeoutS ?? 3600;
  const idleS = options.idleS ?? 900;
  // Seconds the command may take to print its first line (default: the idle limit).
  const firstOutputS = options.firstOutputS ?? idleS;
  const cpus = options.cpus ?? 2;
  // TCG allocates guest RAM lazily; leave the host room for QEMU itself and the page cache.
  const memoryMiB = options.memoryMiB ?? Math.max(2048, Math.min(12288, Math.floor((freemem() / 1048576) * 0.6)));
  const out = options.out ?? process.stdout;
  const log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
  if (/\s/.test(cwd)) throw new Error(`the nested runner cannot run in a directory with white space: ${cwd}`);

  prepareNestedHost();
  mkdirSync('/var/tmp/tsvmm-nested', { recursive: true });
  const jobDir = mkdtempSync('/var/tmp/tsvmm-nested/job-');
  const jobFile = join(jobDir, 'job.sh');
  writeFileSync(jobFile, jobScript(argv, cwd, options.env ?? process.env));

  const underTmp = cwd === '/tmp' || cwd.startsWith('/tmp/');
  const cmdline = [
    'console=ttyS0', 'quiet', 'loglevel=1', 'panic=-1', `nested.job=${jobFile}`,
    ...(underTmp ? [`nested.keep=${cwd}`] : []),
    ...(process.env.TSVMM_NESTED_APPEND ? [process.env.TSVMM_NESTED_APPEND] : []),
  ].join(' ');
  const args = [
    '-machine', 'q35', '-accel', 'tcg,thread=multi', '-cpu', 'max', '-smp', String(cpus),
    '-m', `${memoryMiB}M`, '-display', 'none', '-monitor', 'none', '-serial', 'stdio',
    '-no-reboot', '-nodefaults', '-kernel', kernel, '-initrd', initramfs, '-append', cmdline,
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=passthrough,id=hr,multidevs=remap',
  ];
  const started = Date.now();
  log(`tsvmm-nested: no /dev/kvm here; running under QEMU TCG with nested KVM (${cpus} CPUs, ${memoryMiB} MiB): ${argv.join(' ')}`);
  const qemu = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });

  let status;
  let watchdog;
  let givenUp;
  let commandSpoke = false;
  let pending = '';
  let lastOutput = Date.now();
  const stderr = [];
  const onLine = (line) => {
    const done = STATUS_LINE.exec(line);
    if (status !== undefined) return; // the kernel's own power-off message
    const stuck = softLockupSeconds(line);
    if (stuck === undefined) lastOutput = Date.now();
    else if (stuck >= LOCKUP_LIMIT_S) giveUp(`its kernel reported a CPU stuck for ${stuck} s`);
    if (done) status = Number(done[1]);
    else if (READY_LINE.test(line)) log(`${line} after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    else if (INIT_FAILED.test(line)) log(line);
    else {
      if (stuck === undefined) commandSpoke = true;
      out.write(`${line}\n`);
    }
  };
  // setEncoding: a character split across two reads must not become two replacement characters.
  qemu.stdout.setEncoding('utf8').on('data', (text) => {
    pending += text.replace(/\r/g, '');
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) onLine(line);
  });
  qemu.stderr.on('data', (chunk) => stderr.push(chunk));

  const stop = (why) => {
    watchdog = why;
    qemu.kill('SIGKILL');
  };
  // As if the nested host had crashed (125): the caller reruns what had not finished.
  function giveUp(why) {
    if (givenUp !== undefined) return;
    givenUp = why;
    qemu.kill('SIGKILL');
  }
  const timer = setInterval(() => {
    const now = Date.now();
    const idleLimitS = commandSpoke ? idleS : Math.min(idleS, firstOutputS);
    if (now - started > timeoutS * 1000) stop(`ran longer than ${timeoutS} s`);
    else if (now - lastOutput > idleLimitS * 1000) giveUp(`printed nothing for ${idleLimitS} s (a hung host, test or guest)`);
  }, 5000);
  const forward = (sig) => () => stop(`interrupted by ${sig}`);
  const onInt = forward('SIGINT');
  const onTerm = forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);

  const [code, signal] = await new Promise((res) => qemu.on('exit', (c, s) => res([c, s])));
  clearInterval(timer);
  process.off('SIGINT', onInt);
  process.off('SIGTERM', onTerm);
  if (pending) onLine(pending);
  rmSync(jobDir, { recursive: true, force: true });
  const took = `${((Date.now() - started) / 1000).toFixed(0)} s`;
  if (watchdog) {
    log(`tsvmm-nested: WATCHDOG: the nested VM ${watchdog}; stopped it after ${took}`);
    return 124;
  }
  if (givenUp !== undefined) {
    log(`tsvmm-nested: the nested VM ${givenUp}; stopped it after ${took}`);
    return 125;
  }
  if (status === undefined) {
    const why = Buffer.concat(stderr).toString().trim();
    log(`tsvmm-nested: the nested VM ended (QEMU ${signal ?? `status ${code}`}) without the job's status after ${took}${why ? `: ${why}` : ''}`);
    return 125;
  }
  log(`tsvmm-nested: job exited with ${status} after ${took}`);
  return status;
}

async function main() {
  const argv = process.argv.slice(2);
  const options = {};
  while (argv.length && argv[0] !== '--') {
    const flag = argv.shift();
    const value = Number(argv.shift());
    if (!Number.isFinite(value) || value <= 0) throw new Error(`${flag} needs a positive number`);
    if (flag === '--timeout') options.timeoutS = value;
    else if (flag === '--idle') options.idleS = value;
    else if (flag === '--memory') options.memoryMiB = value;
    else if (flag === '--cpus') options.cpus = value;
    else throw new Error(`unknown option ${flag}`);
  }
  argv.shift();
  if (argv.length === 0) throw new Error('usage: run.mjs [--timeout S] [--idle S] [--memory MiB] [--cpus N] -- CMD [ARG...]');
  if (kvmMode() === 'none') throw new Error(NO_KVM_MESSAGE);
  process.exitCode = await runNested(argv);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    process.stderr.write(`tsvmm-nested: ${e.message}\n`);
    process.exitCode = 2;
  });
}
