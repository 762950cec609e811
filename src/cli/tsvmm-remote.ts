#!/usr/bin/env node
import { readFileSync, realpathSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ConfigError, TsvmmError } from '../errors.js';
import { ApiClient } from '../vmm/api/client.js';
import { parseRestoreSpec } from '../vmm/restore-spec.js';
import { parseSize } from '../util/size.js';
import { runConsole, type ConsoleIo } from './remote-console.js';
import { formatCounters, formatEvent, formatInfo, formatLiveSnapshot, formatPing } from './remote-format.js';
import { CHECKPOINT_COMMANDS, checkpointOptions, runCheckpointCommand } from './remote-checkpoints.js';

/**
 * tsvmm-remote: drives a running tsvmm over its API socket, like Cloud Hypervisor's ch-remote.
 * Exit status: 0 success, 1 the VMM refused or could not be reached, 2 bad command line.
 */

export interface RemoteIo extends ConsoleIo {
  /** Ends `events` (and `console`) when aborted: the CLI wires SIGINT/SIGTERM to it. */
  signal?: AbortSignal;
}

class UsageError extends TsvmmError {
  constructor(message: string) {
    super('EUSAGE', message);
  }
}

const COMMANDS: Array<[string, string]> = [
  ['ping', 'show the VMM version and pid'],
  ['info', 'show the VM configuration and state'],
  ['counters', 'show per-vCPU exit and per-device counters'],
  ['create [file]', 'create a VM from a vm.create JSON file (Cloud Hypervisor format); - or none: read it from stdin'],
  ['boot', 'boot the created VM'],
  ['pause', 'pause the VM'],
  ['resume', 'resume the paused VM'],
  ['reboot', 'reboot the VM'],
  ['power-button', 'press the ACPI power button (the guest decides: usually a clean power-off)'],
  ['shutdown', 'shut the VM down (the VMM keeps running)'],
  ['delete', 'shut the VM down if it runs and forget it (the VMM keeps running, empty)'],
  ['shutdown-vmm', 'shut down the VM and end the tsvmm process'],
  ['snapshot <destination>', 'snapshot the paused VM to file:///dir (or an absolute path); --with-disks: a checkpoint that includes the disks; --live: snapshot the running VM, pausing it only briefly (prints the pause)'],
  ['restore <config>', 'restore from source_url=file:///dir[,prefault=on][,memory_restore_mode=copy|ondemand][,resume=on][,force=on][,disk.ID=PATH][,vsock_socket=PATH][,net.ID=TAP] (paused unless resume=on)'],
  ['resize-disk', 'grow a disk under the running guest: --disk ID --size SIZE (bytes, or 512M, 4G, ...)'],
  ['events', 'print VMM events, one per line, until interrupted'],
  ['console', 'attach to a console port in socket mode: --port serial|console (default: the serial port if it is in socket mode, else the virtio console); Ctrl-] detaches'],
  ...CHECKPOINT_COMMANDS,
];

/**
 * ch-remote verbs for what tsvmm cannot do yet: each is refused with one line that says so,
 * rather than yargs' "unknown argument".
 */
const NOT_YET: ReadonlyMap<string, string> = new Map([
  ...['add-device', 'add-disk', 'add-fs', 'add-net', 'add-pmem', 'add-user-device', 'add-vdpa', 'add-vsock', 'remove-device']
    .map((v): [string, string] => [v, 'tsvmm has no device hotplug yet']),
  ['resize', 'tsvmm has no vCPU or memory hotplug yet (resize-disk grows a disk)'],
  ['resize-zone', 'tsvmm has no memory zones yet'],
  ['nmi', 'tsvmm cannot inject an NMI yet'],
  ['send-migration', 'tsvmm has no live migration yet (snapshot and restore move a paused VM)'],
  ['receive-migration', 'tsvmm has no live migration yet (snapshot and restore move a paused VM)'],
  ['coredump', 'tsvmm cannot write a guest core dump yet'],
]);

/** Verbs whose answer is printed as JSON by default, as ch-remote prints it (`--human` for text). */
const JSON_BY_DEFAULT = new Set(['ping', 'info', 'counters']);

/** `file:///dir`, `destination_url=file:///dir` or `/dir` → a file URL string. */
function snapshotUrl(arg: string): string {
  const value = arg.startsWith('destination_url=') ? arg.slice('destination_url='.length) : arg;
  if (isAbsolute(value)) return pathToFileURL(value).href;
  if (!value.startsWith('file://')) throw new UsageError(`snapshot destination "${arg}" must be file:///dir or an absolute path`);
  return value;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
  return Buffer.concat(chunks).toString('utf8');
}

/** A vm.create body from a file, or from stdin when `file` is `-` or absent (as scripts pipe it). */
async function readConfig(file: string | undefined, stdin: NodeJS.ReadableStream): Promise<unknown> {
  const fromStdin = file === undefined || file === '-';
  const name = fromStdin ? 'stdin' : file;
  let text: string;
  try {
    text = fromStdin ? await readAll(stdin) : readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${name}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new UsageError(`${name} is not valid JSON: ${(err as Error).message}`);
  }
}

function waitForAbort(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal === undefined) return;
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

async function runEvents(client: ApiClient, json: boolean, io: RemoteIo): Promise<void> {
  const ws = await client.events((e) => io.stdout.write(`${json ? JSON.stringify(e) : formatEvent(e)}\n`));
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  await Promise.race([closed, waitForAbort(io.signal)]);
  ws.close();
}

async function run(args: { _: Array<string | number>; [k: string]: unknown }, io: RemoteIo): Promise<void> {
  const client = new ApiClient(String(args['api-socket']));
  const command = String(args._[0]);
  // ch-remote prints the API's JSON for the verbs that return a body: so do these, unless --human.
  const json = args.json === true || (args.human !== true && JSON_BY_DEFAULT.has(command));
  const print = (value: unknown, human: (v: never) => string): void => {
    io.stdout.write(`${json ? JSON.stringify(value, null, 2) : human(value as never)}\n`);
  };
  switch (command) {
    case 'ping': return print(await client.ping(), formatPing);
    case 'info': return print(await client.info(), formatInfo);
    case 'counters': return print(await client.counters(), formatCounters);
    // yargs hands a lone `-` over as `true`.
    case 'create': return client.create(await readConfig(typeof args.file === 'string' || typeof args.file === 'number' ? String(args.file) : undefined, io.stdin));
    case 'boot': return client.boot();
    case 'pause': return client.pause();
    case 'resume': return client.resume();
    case 'reboot': return client.reboot();
    case 'power-button': return void (await client.call('PUT', 'vm.power-button'));
    case 'shutdown': return client.shutdown();
    case 'delete': return client.delete();
    case 'shutdown-vmm': return client.shutdownVmm();
    case 'snapshot': {
      const body = { destination_url: snapshotUrl(String(args.destination)), ...(args['with-disks'] === true ? { disks: true } : {}), ...(args.live === true ? { live: true } : {}) };
      const report = await client.call('PUT', 'vm.snapshot', body);
      // Only a live snapshot of a running VM has something to report.
      if (report !== undefined) print(report, formatLiveSnapshot);
      return;
    }
    case 'restore': return client.restore(parseRestoreSpec(String(args.config), 'restore'));
    case 'resize-disk': {
      if (typeof args.disk !== 'string' || args.size === undefined) throw new UsageError('resize-disk needs --disk ID and --size SIZE');
      return client.resizeDisk({ id: args.disk, desired_size: parseSize(String(args.size), '--size') });
    }
    case 'events': return runEvents(client, json, io);
    case 'console': {
      const port = args.port;
      if (port !== undefined && port !== 'serial' && port !== 'console') throw new UsageError(`console --port: "${String(port)}" must be serial or console`);
      return runConsole(await client.openWebSocket('vm.console', port === undefined ? '' : `?port=${port}`), io, io.signal);
    }
    default:
      if (NOT_YET.has(command)) throw new UsageError(`${command}: not supported yet: ${NOT_YET.get(command)!}`);
      if (await runCheckpointCommand(client, command, args, print)) return;
      throw new UsageError(`unknown command "${command}"`);
  }
}

/** Runs tsvmm-remote with `argv` (without node and script); returns the exit status. */
export async function main(argv: string[], io: RemoteIo): Promise<number> {
  let usageError: string | undefined;
  const parser = yargs(argv)
    .scriptName('tsvmm-remote')
    .usage('$0 --api-socket PATH <command> [args]')
    .option('api-socket', { type: 'string', demandOption: true, describe: 'the socket given to tsvmm --api-socket', requiresArg: true })
    .option('json', { type: 'boolean', default: false, describe: 'print JSON (the default for ping, info and counters, as ch-remote does)' })
    .option('human', { type: 'boolean', default: false, describe: 'ping, info, counters: print text for people instead of JSON' })
    .demandCommand(1, 1, 'give a command', 'give only one command')
    .strict()
    .help()
    .version(false)
    .exitProcess(false)
    .fail((msg, err) => {
      usageError ??= msg ?? err?.message ?? 'bad command line';
    });
  parser.option('with-disks', { type: 'boolean', describe: 'snapshot: include the disks (each continues on a new overlay)' });
  parser.option('live', { type: 'boolean', describe: 'snapshot: take it while the VM runs; it pauses only for the last dirty pages' });
  parser.option('disk', { type: 'string', requiresArg: true, describe: 'resize-disk: the id of the disk (vm.info lists them)' });
  parser.option('size', { type: 'string', requiresArg: true, describe: 'resize-disk: the new size, in bytes or with a unit (4G)' });
  parser.option('port', { type: 'string', requiresArg: true, describe: 'console: serial or console (the virtio console, hvc0)' });
  checkpointOptions(parser);
  for (const [cmd, describe] of COMMANDS) parser.command(cmd, describe);
  // Hidden (no description): known ch-remote verbs that run() refuses, naming the verb. Their
  // arguments are whatever ch-remote takes, so nothing after them is checked.
  for (const verb of NOT_YET.keys()) parser.command(`${verb} [args..]`, false, (y) => y.strict(false));
  let args: Awaited<ReturnType<typeof parser.parseAsync>>;
  let helpText = '';
  try {
    args = await parser.parseAsync(argv, {}, (_err, _argv, output) => {
      helpText = output;
    });
  } catch (err) {
    usageError ??= (err as Error).message;
    args = { _: [], $0: '' } as never;
  }
  if (usageError !== undefined) {
    io.stderr.write(`tsvmm-remote: ${usageError} (see tsvmm-remote --help)\n`);
    return 2;
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout.write(`${helpText}\n`);
    return 0;
  }
  try {
    await run(args, io);
    return 0;
  } catch (err) {
    io.stderr.write(`tsvmm-remote: ${(err as Error).message}\n`);
    // A bad argument (UsageError, or a ConfigError from parsing one) is a usage error.
    return err instanceof UsageError || err instanceof ConfigError ? 2 : 1;
  }
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());
  process.once('SIGTERM', () => abort.abort());
  const io: RemoteIo = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, signal: abort.signal };
  main(hideBin(process.argv), io).then(
    (status) => process.stdout.write('', () => process.exit(status)),
    (err: unknown) => {
      process.stderr.write(`tsvmm-remote: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}
