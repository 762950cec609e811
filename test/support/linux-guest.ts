/**
 * A real Linux guest (Debian's stock kernel and the initramfs of guest-images/linux/build.sh)
 * under tsvmm, driven through its console: the serial port (ttyS0, the default) or the virtio
 * console (hvc0), reached through tsvmm's stdin/stdout (mode tty) or `tsvmm-remote console`
 * (mode socket). Booting Linux is slow (about 40 s when
 * KVM itself runs nested under TCG), restoring a snapshot is not, so a test file boots once,
 * snapshots the shell, and restores that snapshot for each case.
 *
 * Sockets and snapshot directories belong on tmpfs (/tmp in the nested test VM): the host tree
 * is a 9p mount there, and 9p refuses Unix sockets.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kvm } from '../../src/kvm/system.js';
import type { VmFd } from '../../src/kvm/vm.js';
import { GuestShell, type CommandResult } from './guest-shell.js';
import { apiOk, apiRequest, fileUrl, waitForApi } from './snapshot-vm.js';
import { deadline } from './timing.js';
import { TsvmmProcess, remoteBin, repoRoot } from './tsvmm-process.js';

const linuxDir = join(repoRoot, 'guest-images', 'out', 'linux');
export const LINUX = {
  /** Debian's bzImage (64-bit boot protocol entry). */
  vmlinuz: join(linuxDir, 'vmlinuz'),
  /** The same kernel uncompressed: an ELF entered through its PVH note. */
  vmlinux: join(linuxDir, 'vmlinux'),
  initramfs: join(linuxDir, 'initramfs.cpio.gz'),
  /** ext4 root disk whose /sbin/init prints `rootfs: init ok`; boot a copy of it. */
  rootfs: join(linuxDir, 'rootfs.ext4'),
};

/** Throws with what to run when the images are missing (a missing image must fail, not skip). */
export function requireLinuxImages(): void {
  for (const f of Object.values(LINUX)) {
    if (!existsSync(f)) throw new Error(`${f} is missing: run \`npm run guest\` (guest-images/linux/build.sh)`);
  }
}

/**
 * The command line every test guest gets. panic=-1 turns a guest panic into a reset (tsvmm then
 * exits 120) instead of a hang until the test's timeout. nmi_watchdog=0: the guest's hard-lockup
 * detector keeps a PMU counter running, for which the host's KVM creates a perf event on the
 * vCPU thread; the host's first such event, and its last, make the host kernel live-patch its
 * scheduler (perf's sched-events static key), which under QEMU's TCG (the nested test host) was
 * seen to livelock both host CPUs for minutes. The guest does not need the detector here.
 */
export const BASE_CMDLINE = 'console=ttyS0 panic=-1 nmi_watchdog=0';

/** Which of the guest's console ports the test's shell is on. */
export type GuestPort = 'serial' | 'virtio';

/** The base command line with the kernel's console on `port`. */
function baseCmdline(port: GuestPort): string {
  return port === 'virtio' ? BASE_CMDLINE.replace('console=ttyS0', 'console=hvc0') : BASE_CMDLINE;
}

/** A scratch directory on tmpfs for sockets, snapshots and disk copies; remove it with rmSync. */
export function scratchDir(prefix = 'tsvmm-linux-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface LinuxBootOptions {
  cpus: number;
  memoryMiB: number;
  /** Appended to BASE_CMDLINE. */
  cmdline?: string;
  /** The kernel file (default LINUX.vmlinuz). */
  kernel?: string;
  /** `--disk` values. */
  disks?: string[];
  /** API socket path (required: snapshots and restores go through it). */
  apiSocket: string;
  /** How the test reaches the console (default 'tty': tsvmm's stdin/stdout). */
  console?: 'tty' | 'socket';
  /** The guest port the shell is on (default serial): the other port is off. */
  port?: GuestPort;
  /** What to wait for before the shell is used (default the initramfs's `linux: init ok`). */
  ready?: RegExp;
  /** More tsvmm arguments (e.g. `--vsock ...`). */
  args?: string[];
  /** Runs once the shell is ready (e.g. starts guest servers); its failure fails the boot, and the guest is killed. */
  setup?: (guest: LinuxGuest) => Promise<void>;
}

export interface LinuxRestoreOptions {
  apiSocket: string;
  prefault?: boolean;
  force?: boolean;
  /** disk id → the image this restore uses instead of the snapshot's. */
  diskPaths?: Record<string, string>;
  /** Follow the backing files of the diskPaths images (qcow2 overlays made with qemu-img). */
  backingFiles?: boolean;
  console?: 'tty' | 'socket';
  /** The guest port the snapshotted shell is on (default serial). */
  port?: GuestPort;
  /** Resume once restored (default true); false leaves the VM Paused for the caller. */
  resume?: boolean;
  /** The vsock device's Unix socket instead of the snapshot's (`vsock_socket=`). */
  vsockSocket?: string;
  /** network device id → the tap this restore uses instead of the snapshot's (`net.ID=`). */
  taps?: Record<string, string>;
  /** Restore in this network namespace (`ip netns exec`): its taps are created there. */
  netns?: string;
}

let heldVm: { kvm: Kvm; vm: VmFd } | undefined;

/**
 * Keeps one empty KVM VM open in this (test) process for as long as it lives. The first VM a
 * host creates, and the last it destroys, make the host kernel live-patch its scheduler (KVM
 * turns its preempt-notifier static key on and off). On the nested test host, under QEMU's TCG,
 * that patching was seen to livelock both host CPUs for minutes (soft lockups in
 * finish_task_switch, looping through asm_exc_int3, with KVM_CREATE_VM on the stack), stalling
 * every guest. Each restore here kills one tsvmm and starts another, which is such a transition
 * every time; with this VM held the key never turns off.
 */
export function holdKvmVm(): void {
  if (heldVm !== undefined) return;
  const kvm = Kvm.open();
  heldVm = { kvm, vm: kvm.createVm() };
}

/** How long a Linux boot may take: 40 s to 3 min nested under TCG, with room for a loaded host. */
export const BOOT_TIMEOUT_MS = 420_000;
/** How long tsvmm itself may take to start and serve its API. */
const STARTUP_TIMEOUT_MS = 300_000;

export class LinuxGuest {
  readonly shell: GuestShell;
  private endTimer: NodeJS.Timeout | undefined;
  /** Where the vCPUs were when the guest failed to end in time (see end()). */
  private hangReport = '';

  private constructor(
    /** The tsvmm process. */
    readonly vmm: TsvmmProcess,
    /** Whatever carries the console: the tsvmm process itself, or a `tsvmm-remote console`. */
    readonly console: TsvmmProcess,
    readonly apiSocket: string,
  ) {
    this.shell = new GuestShell(console);
  }

  /** Boots Linux, waits for its init and readies the shell (no echo, no kernel messages). */
  static async boot(o: LinuxBootOptions): Promise<LinuxGuest> {
    requireLinuxImages();
    holdKvmVm();
    const port = o.port ?? 'serial';
    const mode = o.console === 'socket' ? 'socket' : 'tty';
    const args = [
      '--kernel', o.kernel ?? LINUX.vmlinuz, '--initramfs', LINUX.initramfs,
      '--cpus', `boot=${o.cpus}`, '--memory', `size=${o.memoryMiB}M`,
      '--cmdline', [baseCmdline(port), o.cmdline ?? ''].join(' ').trim(),
      '--api-socket', o.apiSocket,
      '--serial', port === 'serial' ? mode : 'off', '--console', port === 'virtio' ? mode : 'off',
    ];
    for (const d of o.disks ?? []) args.push('--disk', d);
    args.push(...(o.args ?? []));
    const vmm = new TsvmmProcess(args, { stdin: o.console === 'socket' ? 'ignore' : 'pipe' });
    const guest = await LinuxGuest.attach(vmm, o.apiSocket, o.console ?? 'tty', port, false);
    try {
      await guest.console.waitFor(o.ready ?? /linux: init ok/, BOOT_TIMEOUT_MS, 0);
      await guest.quietShell();
      await o.setup?.(guest);
      return guest;
    } catch (e) {
      guest.kill();
      throw new Error(`${(e as Error).message}\n${guest.diagnostics()}`);
    }
  }

  /**
   * Restores `dir` in a new tsvmm process and resumes it (unless `resume: false`). The shell is
   * used as it was at the snapshot (kernel messages off).
   */
  static async restore(dir: string, o: LinuxRestoreOptions): Promise<LinuxGuest> {
    holdKvmVm();
    const spec = [`source_url=${fileUrl(dir)}`];
    if (o.prefault === true) spec.push('prefault=on');
    if (o.force === true) spec.push('force=on');
    for (const [id, path] of Object.entries(o.diskPaths ?? {})) spec.push(`disk.${id}=${path}`);
    if (o.backingFiles === true) spec.push('backing_files=on');
    if (o.vsockSocket !== undefined) spec.push(`vsock_socket=${o.vsockSocket}`);
    for (const [id, tap] of Object.entries(o.taps ?? {})) spec.push(`net.${id}=${tap}`);
    const vmm = new TsvmmProcess(['--restore', spec.join(','), '--api-socket', o.apiSocket], {
      stdin: o.console === 'socket' ? 'ignore' : 'pipe',
      ...(o.netns === undefined ? {} : { netns: o.netns }),
    });
    const guest = await LinuxGuest.attach(vmm, o.apiSocket, o.console ?? 'tty', o.port ?? 'serial', true);
    try {
      if (o.resume !== false) await guest.resume();
      return guest;
    } catch (e) {
      guest.kill();
      await guest.vmm.exited;
      throw new Error(`restore of ${dir}: ${(e as Error).message}\n${guest.diagnostics()}`);
    }
  }

  /**
   * Waits for the API and the VM (vm.info answers 409 while a restore runs, 404 before a boot has
   * created the VM), then connects the console: a console client needs the VM to exist.
   */
  private static async attach(vmm: TsvmmProcess, apiSocket: string, mode: 'tty' | 'socket', port: GuestPort, restoring: boolean): Promise<LinuxGuest> {
    try {
      // Generous: a cold tsvmm start is Node.js start-up and module loading, which nested under
      // TCG on a busy host was seen to take more than a minute.
      await waitForApi(apiSocket, vmm, STARTUP_TIMEOUT_MS);
      for (;;) {
        const r = await apiRequest(apiSocket, 'GET', 'vm.info');
        if (r.status === 200) break;
        if (r.status !== 409 && r.status !== 404) throw new Error(`vm.info: HTTP ${r.status} ${r.body}`);
        if (vmm.child.exitCode !== null) throw new Error(`tsvmm ${restoring ? '--restore ' : ''}exited ${vmm.child.exitCode}; stderr:\n${vmm.stderr}`);
        await new Promise((r2) => setTimeout(r2, 20));
      }
    } catch (e) {
      vmm.kill();
      await vmm.exited;
      throw new Error(`${(e as Error).message}\ntsvmm stderr:\n${vmm.stderr.slice(-3000)}`);
    }
    if (mode === 'tty') return new LinuxGuest(vmm, vmm, apiSocket);
    // tsvmm-remote copies its stdin to the guest and the guest's output to its stdout.
    const remote = new TsvmmProcess(['--api-socket', apiSocket, 'console', '--port', port === 'virtio' ? 'console' : 'serial'], { bin: remoteBin, stdin: 'pipe' });
    try {
      // Output while no client is attached is dropped: a restored guest resumes only after this.
      await remote.waitFor(/Connected to the guest console/, STARTUP_TIMEOUT_MS, 0, 'stderr');
    } catch (e) {
      vmm.kill();
      remote.kill();
      throw e;
    }
    return new LinuxGuest(vmm, remote, apiSocket);
  }

  /**
   * Turns off kernel messages on the console: they would mix with output. The terminal's echo
   * stays on (GuestShell's framing tells the echo from the output): with echo off, busybox 1.35's
   * ash reads its command line with fgets(), which a SIGCHLD interrupts, and the shell takes that
   * as end of input and exits; this shell is PID 1 and inherits every orphan, so a child ending
   * while it waits for the next command panicked the guest ("Attempted to kill init").
   */
  private async quietShell(): Promise<void> {
    await this.shell.ok('dmesg -n 1');
  }

  run(command: string, timeoutMs?: number): Promise<CommandResult> {
    return this.shell.run(command, timeoutMs);
  }

  ok(command: string, timeoutMs?: number): Promise<string> {
    return this.shell.ok(command, timeoutMs);
  }

  async pause(): Promise<void> {
    await apiOk(this.apiSocket, 'PUT', 'vm.pause');
  }

  async resume(): Promise<void> {
    await apiOk(this.apiSocket, 'PUT', 'vm.resume');
  }

  /** Pauses the VM and writes a snapshot to `dir` (the VM stays paused). */
  async snapshot(dir: string): Promise<void> {
    await this.pause();
    await apiOk(this.apiSocket, 'PUT', 'vm.snapshot', { destination_url: fileUrl(dir) });
  }

  /** Types a command that ends the guest (e.g. `poweroff -f`); resolves as ended() does. */
  end(command: string, timeoutMs = deadline(30_000)): Promise<number | null> {
    this.console.write(`${command}\n`);
    return this.ended(timeoutMs);
  }

  /**
   * Resolves with tsvmm's exit status once the guest has ended it. If it has not within the
   * time, where each vCPU was is recorded for diagnostics() (a paused snapshot's registers),
   * tsvmm is killed and the status is null.
   */
  async ended(timeoutMs = deadline(30_000)): Promise<number | null> {
    const timedOut = new Promise<'timeout'>((r) => { this.endTimer = setTimeout(() => r('timeout'), timeoutMs); });
    try {
      if (await Promise.race([this.vmm.exited, timedOut]) === 'timeout') {
        this.hangReport = await this.vcpuReport();
        this.kill();
      }
      return (await this.vmm.exited).code;
    } finally {
      clearTimeout(this.endTimer);
      this.console.kill();
    }
  }

  /** Pauses the VM, snapshots it, and reads every vCPU's rip, cr0 and mp_state from vm.json. */
  private async vcpuReport(): Promise<string> {
    const dir = scratchDir('tsvmm-hang-');
    try {
      await this.snapshot(dir);
      const vm = JSON.parse(readFileSync(join(dir, 'vm.json'), 'utf8')) as { vcpus: Array<{ regs: { rip: string }; sregs: { cr0: string }; mp_state: number }> };
      return vm.vcpus.map((v, i) => `vCPU ${i}: rip ${v.regs.rip} cr0 ${v.sregs.cr0} mp_state ${v.mp_state}`).join('\n');
    } catch (e) {
      return `vCPU state unavailable: ${(e as Error).message}`;
    } finally {
      removeScratch(dir);
    }
  }

  /** SIGKILLs tsvmm (and the console client) and waits for it to be gone. */
  async killHard(): Promise<void> {
    this.kill();
    await this.vmm.exited;
  }

  kill(): void {
    this.vmm.kill('SIGKILL');
    if (this.console !== this.vmm) this.console.kill('SIGKILL');
  }

  /** The end of the console log and tsvmm's stderr, for failure messages. */
  diagnostics(): string {
    const hang = this.hangReport === '' ? '' : `\ntsvmm did not exit; where the vCPUs were:\n${this.hangReport}`;
    const warnings = kernelWarnings(this.console.stdout);
    const earlier = warnings === '' ? '' : `kernel warnings earlier on the console:\n${warnings}\n`;
    return `${earlier}console:\n${this.console.stdout.slice(-3000)}\ntsvmm stderr:\n${this.vmm.stderr.slice(-2000)}${hang}`;
  }
}

/**
 * The kernel's own reports of trouble on a console log (WARN, BUG, oops, RCU stalls, unchecked MSR
 * accesses), each with the lines that follow it: the console tail in a failure message often
 * starts after the first sign of what went wrong.
 */
export function kernelWarnings(consoleLog: string, perReport = 12, maxReports = 4): string {
  const lines = consoleLog.replace(/\r/g, '').split('\n');
  const out: string[] = [];
  let reports = 0;
  for (let i = 0; i < lines.length && reports < maxReports; i++) {
    if (!/WARNING:|BUG:|Oops|rcu: INFO|unchecked MSR|general protection/.test(lines[i]!)) continue;
    out.push(...lines.slice(i, i + perReport));
    i += perReport - 1;
    reports++;
  }
  return out.join('\n');
}

/** Removes a scratch directory (and everything in it). */
export function removeScratch(dir: string | undefined): void {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
}

/** Per-CPU counts of the `LOC:` (local timer interrupts) line of /proc/interrupts. */
export function localTimerInterrupts(procInterrupts: string): number[] {
  const line = procInterrupts.split('\n').find((l) => /^\s*LOC:/.test(l));
  if (line === undefined) throw new Error(`no LOC: line in /proc/interrupts:\n${procInterrupts}`);
  const counts: number[] = [];
  for (const field of line.replace(/^\s*LOC:/, '').trim().split(/\s+/)) {
    if (!/^\d+$/.test(field)) break;
    counts.push(Number(field));
  }
  return counts;
}
