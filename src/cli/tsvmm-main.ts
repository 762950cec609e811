/**
 * `tsvmm`: boot a VM from the command line, restore one from a snapshot, or start an empty VMM
 * that waits for instructions on its API socket. Cloud Hypervisor's flags and syntax.
 * Loaded by tsvmm.ts once a vCPU thread has started loading.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { TsvmmError } from '../errors.js';
import { openEventMonitor, parseEventMonitor } from './event-monitor.js';
import { openSync } from 'node:fs';
import { logLevelFromVerbosity, setLogFd, setLogLevel } from '../util/log.js';
import { parseApiSocket, vmConfigFromCli } from '../vmm/cli-config.js';
import { EXIT_STATUS, describeEnd, exitStatusOf, type VmEnd } from '../vmm/exit-status.js';
import { VERSION, Vmm } from '../vmm/vmm.js';
import { parseRestoreSpec } from '../vmm/restore-spec.js';
import { waitForVcpuWorkersLoaded } from '../vmm/vcpu-thread.js';

/** The only way out of the process: vCPU threads still loading koffi cannot be stopped safely. */
function exitProcess(status: number): never {
  waitForVcpuWorkersLoaded();
  process.exit(status);
}

function fail(message: string, status: number): never {
  // One line whatever the source: yargs reports bad choices over several indented lines.
  process.stderr.write(`tsvmm: ${message.trim().replace(/\s*\n\s*/g, ' ')}\n`);
  exitProcess(status);
}

/**
 * Cloud Hypervisor's flags for what tsvmm cannot do yet: refused with one line naming the flag
 * and why, not as yargs' "unknown argument" (a script written for Cloud Hypervisor learns what is
 * missing).
 */
const NOT_YET_FLAGS: ReadonlyMap<string, string> = new Map([
  ['fs', 'tsvmm has no virtio-fs device yet'],
  ['pmem', 'tsvmm has no persistent-memory device yet'],
  ['balloon', 'tsvmm has no balloon device yet'],
  ['device', 'tsvmm has no VFIO device passthrough'],
  ['user-device', 'tsvmm has no vfio-user devices'],
  ['vdpa', 'tsvmm has no vDPA devices'],
  ['numa', 'tsvmm has no NUMA topology yet'],
  ['memory-zone', 'tsvmm has no memory zones yet'],
  ['firmware', 'tsvmm boots kernels directly, without firmware'],
  ['igvm', 'tsvmm boots kernels directly, without IGVM files'],
  ['host-data', 'tsvmm has no confidential-VM support'],
  ['platform', 'tsvmm has no PCI segments, serial numbers or OEM strings yet'],
  ['pci-segment', 'tsvmm has no PCI'],
  ['pvpanic', 'tsvmm has no pvpanic device yet'],
  ['watchdog', 'tsvmm has no watchdog device yet'],
  ['tpm', 'tsvmm has no TPM device'],
  ['sgx-epc', 'tsvmm has no SGX support'],
  ['gdb', 'tsvmm has no GDB server'],
  ['debug-console', 'tsvmm has no debug console port; use --serial or --console'],
  ['landlock', 'tsvmm has no Landlock sandbox yet'],
  ['landlock-rules', 'tsvmm has no Landlock sandbox yet'],
  ['rate-limit-group', 'tsvmm has no I/O rate limits yet'],
  ['ivshmem', 'tsvmm has no ivshmem device'],
]);

/** The first Cloud Hypervisor flag in `args` that tsvmm refuses, with the reason; `--seccomp false` is what tsvmm does anyway. */
function notYetFlag(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(args[i]!);
    if (m === null) continue;
    const [, name, inline] = m;
    if (name === 'seccomp') {
      const value = inline ?? args[i + 1];
      if (value !== 'false') return `${value === undefined ? '--seccomp' : `--seccomp ${value}`}: not supported yet: tsvmm has no seccomp filter (only --seccomp false, which is what it does)`;
      continue;
    }
    const why = NOT_YET_FLAGS.get(name!);
    if (why !== undefined) return `--${name}: not supported yet: ${why}`;
  }
  return undefined;
}

export async function main(): Promise<void> {
  // Cloud Hypervisor's -V/--version; read before yargs, whose own version handling exits the
  // process at once (unsafe while a vCPU thread is loading: see exitProcess).
  const args = hideBin(process.argv);
  if (args.length === 1 && (args[0] === '-V' || args[0] === '--version')) {
    process.stdout.write(`tsvmm v${VERSION}\n`);
    exitProcess(0);
  }
  const refused = notYetFlag(args);
  if (refused !== undefined) fail(refused, EXIT_STATUS.usage);
  const argv = await yargs(args.filter((a, i) => !(a === '--seccomp' || a.startsWith('--seccomp=') || (args[i - 1] === '--seccomp' && a === 'false'))))
    .scriptName('tsvmm')
    .usage('$0 --kernel FILE [options]\n$0 --restore source_url=file:///DIR [options]\n$0 --api-socket PATH\n$0 -V | --version')
    .option('kernel', { type: 'string', describe: 'kernel to boot: bzImage, or ELF vmlinux (PVH note or 64-bit entry)' })
    .option('initramfs', { type: 'string', describe: 'initramfs loaded high in guest RAM' })
    .option('cmdline', { type: 'string', describe: 'kernel command line' })
    .option('cpus', { type: 'string', describe: 'boot=N[,max=N]', default: 'boot=1' })
    .option('memory', { type: 'string', describe: 'size=BYTES (e.g. 512M, 4G)', default: 'size=512M' })
    .option('disk', { type: 'string', array: true, describe: 'path=FILE[,readonly=on][,id=NAME][,serial=STR][,image_type=raw|qcow2] (repeatable; format= is an alias of image_type=)' })
    .option('serial', { type: 'string', describe: 'the 16550 UART (ttyS0): tty | pty | file=PATH | socket=PATH | socket | null | off (default null, as Cloud Hypervisor)' })
    .option('api-socket', { type: 'string', describe: 'serve the HTTP API: path=PATH | fd=N (an inherited listening socket) | PATH' })
    .option('restore', { type: 'string', describe: 'source_url=file:///DIR[,prefault=on][,memory_restore_mode=copy|ondemand][,resume=on][,force=on][,disk.ID=PATH][,backing_files=on][,vsock_socket=PATH][,net.ID=TAP] — restore a snapshot (paused unless resume=on)' })
    .option('console', { type: 'string', describe: 'the virtio console (hvc0): tty | pty | file=PATH | socket=PATH | socket | null | off (default tty, or off when --serial tty)' })
    .option('rng', { type: 'string', describe: 'src=PATH: the host file virtio-rng reads (default /dev/urandom, as Cloud Hypervisor)' })
    .option('vsock', { type: 'string', describe: 'cid=N,socket=PATH[,id=NAME]: virtio-vsock; the host connects to PATH and sends "CONNECT <port>\\n", the guest\'s connections to host port P go to PATH_P (as Cloud Hypervisor and Firecracker)' })
    .option('net', { type: 'string', array: true, describe: 'tap=NAME[,mac=MAC][,ip=A.B.C.D[,mask=A.B.C.D]][,id=NAME] | fd=N[,mac=MAC][,id=NAME]: virtio-net on a host TAP interface (opened, or created if missing; neither tap= nor fd=: a new one); MAC random unless given (repeatable)' })
    .option('event-monitor', { type: 'string', describe: 'path=PATH | fd=N: write every VMM event there, one JSON object per line' })
    .option('log-level', { choices: ['error', 'warn', 'info', 'debug'] as const, describe: 'default warn' })
    .option('v', { type: 'count', describe: 'more log: -v info, -vv debug (Cloud Hypervisor\'s)' })
    .option('log-file', { type: 'string', describe: 'write the log there instead of stderr' })
    .strict()
    .version(false)
    .help()
    .fail((msg, err) => {
      fail(err?.message ?? msg, EXIT_STATUS.usage);
    })
    .parseAsync();

  // yargs turns a repeated flag into an array and a bare one into '': only --disk and --net may repeat, and
  // the file and socket paths cannot be empty.
  const given = argv as Record<string, unknown>;
  for (const name of ['kernel', 'initramfs', 'cmdline', 'cpus', 'memory', 'serial', 'console', 'rng', 'vsock', 'event-monitor', 'api-socket', 'restore', 'log-level', 'log-file']) {
    if (Array.isArray(given[name])) fail(`--${name} is given more than once`, EXIT_STATUS.usage);
  }
  for (const name of ['kernel', 'initramfs', 'serial', 'console', 'rng', 'vsock', 'event-monitor', 'api-socket', 'restore', 'log-file']) {
    if (given[name] === '') fail(`--${name} needs a value`, EXIT_STATUS.usage);
  }

  if (argv['log-level'] !== undefined && argv.v > 0) fail('give --log-level or -v, not both', EXIT_STATUS.usage);
  setLogLevel(argv['log-level'] ?? logLevelFromVerbosity(argv.v));
  if (argv['log-file'] !== undefined) {
    try {
      setLogFd(openSync(argv['log-file'], 'a'));
    } catch (e) {
      fail(`--log-file: cannot open ${argv['log-file']}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, EXIT_STATUS.usage);
    }
  }
  const apiSocketText = argv['api-socket'];
  if (argv.kernel === undefined && argv.restore === undefined && apiSocketText === undefined) {
    fail('nothing to do: give --kernel FILE to boot, --restore source_url=... to restore, or --api-socket PATH to wait for API requests', EXIT_STATUS.usage);
  }
  if (argv.kernel !== undefined && argv.restore !== undefined) {
    fail('--kernel and --restore are exclusive: a restored VM keeps the kernel it was snapshotted with', EXIT_STATUS.usage);
  }

  let vmm: Vmm;
  let restore: ReturnType<typeof parseRestoreSpec> | undefined;
  let config: ReturnType<typeof vmConfigFromCli> | undefined;
  let apiSocket: ReturnType<typeof parseApiSocket> | undefined;
  let eventMonitor: ReturnType<typeof openEventMonitor> | undefined;
  try {
    if (apiSocketText !== undefined) apiSocket = parseApiSocket(apiSocketText);
    if (argv['event-monitor'] !== undefined) eventMonitor = openEventMonitor(parseEventMonitor(argv['event-monitor']));
    if (argv.restore !== undefined) restore = parseRestoreSpec(argv.restore);
    if (argv.kernel !== undefined) {
      const o: Parameters<typeof vmConfigFromCli>[0] = { kernel: argv.kernel, cpus: argv.cpus, memory: argv.memory };
      if (argv.serial !== undefined) o.serial = argv.serial;
      if (argv.console !== undefined) o.console = argv.console;
      if (argv.rng !== undefined) o.rng = argv.rng;
      if (argv.vsock !== undefined) o.vsock = argv.vsock;
      if (argv.initramfs !== undefined) o.initramfs = argv.initramfs;
      if (argv.cmdline !== undefined) o.cmdline = argv.cmdline;
      if (argv.disk !== undefined) o.disk = argv.disk.map(String);
      if (argv.net !== undefined) o.net = argv.net.map(String);
      config = vmConfigFromCli(o);
    }
  } catch (e) {
    fail(e instanceof Error ? e.message : String(e), EXIT_STATUS.usage);
  }

  const ended = new Promise<VmEnd>((resolve) => {
    vmm = new Vmm({ onVmEnd: resolve, stdinIsConsole: true });
  });
  if (eventMonitor !== undefined) vmm!.subscribe(eventMonitor);

  const onSignal = (signal: 'SIGINT' | 'SIGTERM') => () => { void vmm.end({ kind: 'signal', signal }); };
  process.on('SIGINT', onSignal('SIGINT'));
  process.on('SIGTERM', onSignal('SIGTERM'));

  const startup = (async (): Promise<void> => {
    if (apiSocket !== undefined) await vmm!.serveApi(apiSocket);
    if (config !== undefined) {
      await vmm!.create(config);
      await vmm!.boot();
    } else if (restore !== undefined) {
      await vmm!.restore(restore);
    }
  })();
  try {
    // A signal (or a guest that ends at once) during start-up ends the process too.
    await Promise.race([startup, ended]);
  } catch (e) {
    await vmm!.dispose();
    const status = e instanceof TsvmmError && e.code === 'EINVALIDCONFIG' ? EXIT_STATUS.usage : EXIT_STATUS.vmmError;
    fail(e instanceof Error ? e.message : String(e), status);
  }

  const end = await ended;
  await vmm!.dispose();
  if (end.kind !== 'requested') process.stderr.write(`tsvmm: ${describeEnd(end)}\n`);
  exitProcess(exitStatusOf(end));
}

