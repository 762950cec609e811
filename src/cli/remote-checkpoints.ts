/**
 * tsvmm-remote's disk-snapshot, checkpoint and block-job commands (virsh-style):
 *   snapshot-disk DISK FILE, snapshot-create NAME [--disk-only] [--description S],
 *   snapshot-list, snapshot-revert NAME, snapshot-delete NAME,
 *   block-commit DISK [--top F] [--base F] [--rate B] [--wait], block-pull DISK [--base F] [--rate B] [--wait],
 *   jobs [--cancel ID].
 * Each PUT answers 204; the command then reads what the operation measured (vm.disk-operation,
 * vm.snapshot-list, vm.jobs) and prints it.
 */
import { resolve } from 'node:path';
import type { Argv } from 'yargs';
import type { ApiClient } from '../vmm/api/client.js';
import type { LastOperation, SnapshotListing } from '../vmm/checkpoints/types.js';
import type { BlockJobInfo } from '../vmm/jobs/types.js';

export const CHECKPOINT_COMMANDS: Array<[string, string]> = [
  ['snapshot-disk <disk> <file>', 'live external snapshot: DISK continues on a new qcow2 overlay FILE over its current image'],
  ['snapshot-create <name>', 'named snapshot of memory, devices and disks (--disk-only: disks only, the guest keeps running)'],
  ['snapshot-list', 'list named snapshots (name, time, kind, parent, size)'],
  ['snapshot-revert <name>', 'bring back memory, devices and disks of a named snapshot'],
  ['snapshot-delete <name>', 'delete a named snapshot, merging disk layers only it needed'],
  ['block-commit <disk>', 'merge the active image (or --top) down into --base (default: its backing file), in the background'],
  ['block-pull <disk>', 'copy backing data up into the active image (down to --base, default all), in the background'],
  ['jobs', 'list block jobs with progress (--cancel ID cancels one)'],
];

/** Options of the commands above (yargs is strict: every option must be declared). */
export function checkpointOptions(parser: Argv): Argv {
  return parser
    .option('disk-only', { type: 'boolean', describe: 'snapshot-create: disks only, no memory state' })
    .option('description', { type: 'string', requiresArg: true, describe: 'snapshot-create: free text kept in the catalogue' })
    .option('snapshot-dir', { type: 'string', requiresArg: true, describe: 'snapshot-*: catalogue folder (default: <disk0 folder>/<base image>.snapshots)' })
    .option('top', { type: 'string', requiresArg: true, describe: 'block-commit: the image to merge down (default: the active one)' })
    .option('base', { type: 'string', requiresArg: true, describe: 'block-commit/-pull: the image to merge into / stop at' })
    .option('rate', { type: 'number', requiresArg: true, describe: 'block-commit/-pull: bytes per second at most' })
    .option('wait', { type: 'boolean', describe: 'block-commit/-pull: wait for the job to end and print its result' })
    .option('cancel', { type: 'string', requiresArg: true, describe: 'jobs: cancel this job' });
}

function size(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(0)} KiB`;
}

export function formatListing(l: SnapshotListing): string {
  const rows = [['', 'name', 'created', 'kind', 'parent', 'size', 'paused'], ...l.snapshots.map((s) => [
    s.current ? '*' : '', s.name, s.created.replace('T', ' ').replace(/\.\d+Z$/, 'Z'), s.kind, s.parent ?? '-', size(s.size_bytes), `${s.paused_ms.toFixed(1)} ms`,
  ])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
  return [`snapshots in ${l.snapshot_dir}:`, ...lines].join('\n');
}

export function formatJobs(jobs: BlockJobInfo[]): string {
  if (jobs.length === 0) return 'no block jobs';
  return jobs.map((j) => {
    const pct = j.total === 0 ? 0 : (100 * j.done) / j.total;
    const extra = [j.error !== undefined ? `error: ${j.error}` : '', j.pivot_pause_ms !== undefined ? `pivot ${j.pivot_pause_ms.toFixed(1)} ms` : '',
      j.bytes_per_second !== undefined ? `${size(j.bytes_per_second)}/s` : ''].filter((s) => s !== '').join(', ');
    return `${j.id} ${j.type} disk ${j.disk}: ${j.state} ${pct.toFixed(1)}% (${j.top} → ${j.base ?? '(no backing)'})${extra ? ` ${extra}` : ''}`;
  }).join('\n');
}

function formatOperation(op: LastOperation | null): string {
  if (op === null) return 'done';
  const r = op.result;
  if (op.operation === 'disk-snapshotted') return `disk ${String(r['disk'])} now on ${String(r['overlay'])} (frozen: ${String(r['frozen'])}); guest I/O held ${Number(r['io_pause_ms']).toFixed(2)} ms`;
  if (op.operation === 'snapshot-created') return `snapshot ${String(r['name'])} (${String(r['kind'])}) created; guest paused ${Number(r['paused_ms']).toFixed(1)} ms`;
  if (op.operation === 'snapshot-reverted') return `reverted to ${String(r['name'])} in ${Number(r['duration_ms']).toFixed(0)} ms; the VM is ${r['running'] === true ? 'running' : 'paused'}`;
  if (op.operation === 'snapshot-deleted') return `snapshot ${String(r['name'])} deleted`;
  return `${op.operation}: ${JSON.stringify(r)}`;
}

type Args = { _: Array<string | number>; [k: string]: unknown };

/** Runs `command` if it is one of these; returns false otherwise. */
export async function runCheckpointCommand(client: ApiClient, command: string, args: Args, print: (value: unknown, human: (v: never) => string) => void): Promise<boolean> {
  const dir = args['snapshot-dir'] === undefined ? {} : { snapshot_dir: resolve(String(args['snapshot-dir'])) };
  const lastOp = async (): Promise<void> => print(await client.call('GET', 'vm.disk-operation'), formatOperation);
  const job = async (route: string, body: Record<string, unknown>): Promise<void> => {
    if (args.rate !== undefined) body['rate_limit'] = Number(args.rate);
    await client.call('PUT', route, body);
    const started = (await client.call('GET', 'vm.jobs')) as BlockJobInfo[];
    let mine = started.filter((j) => j.disk === body['disk']).at(-1);
    while (args.wait === true && mine !== undefined && mine.finished === undefined) {
      await new Promise((r) => setTimeout(r, 200));
      mine = ((await client.call('GET', 'vm.jobs')) as BlockJobInfo[]).find((j) => j.id === mine!.id);
    }
    print(mine === undefined ? [] : [mine], formatJobs);
  };
  switch (command) {
    case 'snapshot-disk':
      await client.call('PUT', 'vm.snapshot-disk', { disk: String(args.disk), file: resolve(String(args.file)) });
      await lastOp();
      return true;
    case 'snapshot-create': {
      const body: Record<string, unknown> = { name: String(args.name), ...dir };
      if (args['disk-only'] === true) body['disk_only'] = true;
      if (args.description !== undefined) body['description'] = String(args.description);
      await client.call('PUT', 'vm.snapshot-create', body);
      await lastOp();
      return true;
    }
    case 'snapshot-list':
      print(await client.call('GET', 'vm.snapshot-list'), formatListing);
      return true;
    case 'snapshot-revert':
    case 'snapshot-delete':
      await client.call('PUT', `vm.${command}`, { name: String(args.name), ...dir });
      await lastOp();
      return true;
    case 'block-commit': {
      const body: Record<string, unknown> = { disk: String(args.disk) };
      if (args.top !== undefined) body['top'] = resolve(String(args.top));
      if (args.base !== undefined) body['base'] = resolve(String(args.base));
      await job('vm.block-commit', body);
      return true;
    }
    case 'block-pull': {
      const body: Record<string, unknown> = { disk: String(args.disk) };
      if (args.base !== undefined) body['base'] = resolve(String(args.base));
      await job('vm.block-pull', body);
      return true;
    }
    case 'jobs':
      if (args.cancel !== undefined) await client.call('PUT', 'vm.job-cancel', { id: String(args.cancel) });
      print(await client.call('GET', 'vm.jobs'), formatJobs);
      return true;
    default:
      return false;
  }
}
