// A stock Debian Linux (the kernel and initramfs of `npm run guest`) on tsvmm or on QEMU microvm,
// its console on the VMM's stdio, driven like a terminal: the benchmarks that compare a device
// inside a real guest (console-bench.mjs, rng-bench.mjs) share it.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../..');
const linux = join(root, 'guest-images/out/linux');
export const TSVMM = join(root, 'dist/cli/tsvmm.js');
export const KERNEL = join(linux, 'vmlinux');
export const INITRAMFS = join(linux, 'initramfs.cpio.gz');

/** Exits with a one-line message when the build or the guest images are missing. */
export function requireInputs(bench) {
  for (const [f, how] of [[TSVMM, 'npm run build'], [KERNEL, 'npm run guest'], [INITRAMFS, 'npm run guest']]) {
    if (!existsSync(f)) {
      console.error(`${bench}: ${f} is missing; run \`${how}\` first`);
      process.exit(2);
    }
  }
}

/** tsvmm booting the guest with `cmdline` and `extra` flags (both consoles as the caller sets them). */
export function tsvmmCommand(cmdline, extra) {
  return [process.execPath, TSVMM, '--kernel', KERNEL, '--initramfs', INITRAMFS, '--memory', 'size=256M', '--cmdline', cmdline, ...extra];
}

/** QEMU microvm on KVM booting the same guest, with `devices` (its console among them). */
export function qemuCommand(cmdline, devices) {
  return ['qemu-system-x86_64', '-M', 'microvm', '-enable-kvm', '-cpu', 'host', '-m', '256M', '-smp', '1', '-display', 'none',
    '-nodefaults', '-no-reboot', '-kernel', KERNEL, '-initrd', INITRAMFS, '-append', cmdline, ...devices];
}

/** Starts a VMM; `p.out` keeps the tail of its stdout, `p.bytes` counts all of it. */
export function start(name, command) {
  const [cmd, ...args] = command;
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.on('error', () => {});
  const p = { name, child, out: '', bytes: 0, err: '', waiters: [] };
  const wake = () => { const w = p.waiters; p.waiters = []; w.forEach((f) => f()); };
  // Only the tail is kept: markers arrive last, and scanning a long buffer on every chunk would
  // make the harness, not the guest, the bottleneck.
  child.stdout.on('data', (d) => { p.bytes += d.length; p.out += d.toString('latin1'); if (p.out.length > 32768) p.out = p.out.slice(-16384); wake(); });
  child.stderr.setEncoding('utf8').on('data', (d) => { p.err += d; });
  child.on('exit', wake);
  return p;
}

export async function waitFor(p, re, timeoutMs = 300_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = p.out.replace(/\r/g, '').match(re);
    if (m) return m;
    if (p.child.exitCode !== null) throw new Error(`${p.name}: exited (${p.child.exitCode}) waiting for ${re}\n${p.out.slice(-1500)}\n${p.err.slice(-1500)}`);
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`${p.name}: timed out waiting for ${re}\n${p.out.slice(-1500)}\n${p.err.slice(-1500)}`);
    await new Promise((r) => { const t = setTimeout(r, left); p.waiters.push(() => { clearTimeout(t); r(); }); });
  }
}

let marker = 0;
/**
 * Types `command` and resolves with its output once it has run: the end marker is built by an
 * arithmetic expansion, so the terminal's echo of the typed line never matches it.
 */
export async function sh(p, command, timeoutMs) {
  const id = ++marker;
  p.out = '';
  p.child.stdin.write(`${command}; echo "@@END$((${id}))"\n`);
  const m = await waitFor(p, new RegExp(`([^]*)@@END${id}\\n`), timeoutMs);
  return m[1];
}

/** Boots to the initramfs shell and quiets the kernel. */
export async function booted(p) {
  await waitFor(p, /linux: init ok/);
  await sh(p, 'dmesg -n 1');
}

export const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

/**
 * `measure(vmm)` for tsvmm and QEMU, `rounds` times each, the order alternating from round to
 * round; each result is logged to stderr as `<bench>: round N vmm: {...}`.
 */
export async function alternateRounds(bench, rounds, measure) {
  const results = { tsvmm: [], qemu: [] };
  for (let r = 0; r < rounds; r++) {
    for (const vmm of r % 2 === 0 ? ['tsvmm', 'qemu'] : ['qemu', 'tsvmm']) {
      results[vmm].push(await measure(vmm));
      console.error(`${bench}: round ${r + 1} ${vmm}: ${JSON.stringify(results[vmm].at(-1))}`);
    }
  }
  return results;
}

/** A markdown row: the medians of field `k` over tsvmm's and QEMU's rounds, and their ratio. */
export function ratioRow(results, label, k, digits) {
  const m = (vmm) => median(results[vmm].map((x) => x[k]));
  return `| ${label} | ${m('tsvmm').toFixed(digits)} | ${m('qemu').toFixed(digits)} | ${(m('tsvmm') / m('qemu')).toFixed(2)} |`;
}
