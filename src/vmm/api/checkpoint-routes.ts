/**
 * API routes of disk snapshots, named checkpoints and block jobs (src/vmm/checkpoints/,
 * src/vmm/jobs/). Bodies are validated as strictly as the rest of the API: unknown fields and
 * wrong types are 400s that name the field.
 */
import { isAbsolute } from 'node:path';
import { ConfigError } from '../../errors.js';
import type { VmmController } from '../controller.js';
import { NoVmError } from '../errors.js';
import type { DiskSnapshotRequest, SnapshotCreateRequest, SnapshotNameRequest } from '../checkpoints/types.js';
import type { BlockCommitRequest, BlockPullRequest, JobCancelRequest } from '../jobs/types.js';
import type { Route } from './route.js';

type Json = Record<string, unknown>;

function body(value: unknown, allowed: readonly string[]): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError('body: expected a JSON object', { field: 'body' });
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) throw new ConfigError(`unknown field "${key}" (allowed here: ${allowed.join(', ')})`, { field: key });
  }
  return value as Json;
}

function text(o: Json, field: string, required: boolean, max = 4096): string | undefined {
  const v = o[field];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw new ConfigError(`${field}: expected a non-empty string${required ? ' (required)' : ''}`, { field });
  if (v.length > max || v.includes('\0')) throw new ConfigError(`${field}: longer than ${max} characters or contains NUL`, { field });
  return v;
}

function path(o: Json, field: string, required: boolean): string | undefined {
  const v = text(o, field, required);
  if (v !== undefined && !isAbsolute(v)) throw new ConfigError(`${field}: "${v}" must be an absolute path`, { field });
  return v;
}

function flag(o: Json, field: string): boolean | undefined {
  const v = o[field];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new ConfigError(`${field}: expected true or false`, { field });
  return v;
}

function rate(o: Json): number | undefined {
  const v = o['rate_limit'];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ConfigError('rate_limit: expected a non-negative integer (bytes per second)', { field: 'rate_limit' });
  return v;
}

function assign<T extends object>(target: T, extra: Record<string, unknown>): T {
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) (target as Record<string, unknown>)[k] = v;
  return target;
}

export function parseDiskSnapshotRequest(value: unknown): DiskSnapshotRequest {
  const o = body(value, ['disk', 'file']);
  return { disk: text(o, 'disk', true, 64)!, file: path(o, 'file', true)! };
}

export function parseSnapshotCreateRequest(value: unknown): SnapshotCreateRequest {
  const o = body(value, ['name', 'disk_only', 'description', 'snapshot_dir']);
  return assign({ name: text(o, 'name', true, 64)! }, {
    disk_only: flag(o, 'disk_only'), description: o['description'] === undefined ? undefined : text(o, 'description', false),
    snapshot_dir: path(o, 'snapshot_dir', false),
  });
}

export function parseSnapshotNameRequest(value: unknown): SnapshotNameRequest {
  const o = body(value, ['name', 'snapshot_dir']);
  return assign({ name: text(o, 'name', true, 64)! }, { snapshot_dir: path(o, 'snapshot_dir', false) });
}

export function parseBlockCommitRequest(value: unknown): BlockCommitRequest {
  const o = body(value, ['disk', 'top', 'base', 'rate_limit']);
  return assign({ disk: text(o, 'disk', true, 64)! }, { top: path(o, 'top', false), base: path(o, 'base', false), rate_limit: rate(o) });
}

export function parseBlockPullRequest(value: unknown): BlockPullRequest {
  const o = body(value, ['disk', 'base', 'rate_limit']);
  return assign({ disk: text(o, 'disk', true, 64)! }, { base: path(o, 'base', false), rate_limit: rate(o) });
}

export function parseJobCancelRequest(value: unknown): JobCancelRequest {
  const o = body(value, ['id']);
  return { id: text(o, 'id', true, 64)! };
}

/** A controller without the optional disk-snapshot methods (a test double) answers like no VM. */
function need<T>(m: T | undefined): T {
  if (m === undefined) throw new NoVmError('this VMM does not support disk snapshots');
  return m;
}

export const CHECKPOINT_ROUTES: readonly Route[] = [
  {
    kind: 'action', method: 'PUT', name: 'vm.snapshot-disk', concurrency: 'exclusive',
    parseBody: parseDiskSnapshotRequest, run: (c, b) => need(c.snapshotDisk).call(c, b as DiskSnapshotRequest),
  },
  {
    kind: 'action', method: 'PUT', name: 'vm.snapshot-create', concurrency: 'exclusive',
    parseBody: parseSnapshotCreateRequest, run: (c, b) => need(c.snapshotCreate).call(c, b as SnapshotCreateRequest),
  },
  { kind: 'json', method: 'GET', name: 'vm.snapshot-list', read: (c: VmmController) => need(c.snapshotList).call(c, {}) },
  {
    kind: 'action', method: 'PUT', name: 'vm.snapshot-revert', concurrency: 'exclusive',
    parseBody: parseSnapshotNameRequest, run: (c, b) => need(c.snapshotRevert).call(c, b as SnapshotNameRequest),
  },
  {
    kind: 'action', method: 'PUT', name: 'vm.snapshot-delete', concurrency: 'exclusive',
    parseBody: parseSnapshotNameRequest, run: (c, b) => need(c.snapshotDelete).call(c, b as SnapshotNameRequest),
  },
  { kind: 'json', method: 'GET', name: 'vm.disk-operation', read: (c: VmmController) => need(c.lastDiskOperation).call(c) },
  {
    kind: 'action', method: 'PUT', name: 'vm.block-commit', concurrency: 'exclusive',
    parseBody: parseBlockCommitRequest, run: (c, b) => need(c.blockCommit).call(c, b as BlockCommitRequest),
  },
  {
    kind: 'action', method: 'PUT', name: 'vm.block-pull', concurrency: 'exclusive',
    parseBody: parseBlockPullRequest, run: (c, b) => need(c.blockPull).call(c, b as BlockPullRequest),
  },
  { kind: 'json', method: 'GET', name: 'vm.jobs', read: (c: VmmController) => need(c.blockJobs).call(c) },
  {
    kind: 'action', method: 'PUT', name: 'vm.job-cancel', concurrency: 'exclusive',
    parseBody: parseJobCancelRequest, run: (c, b) => need(c.blockJobCancel).call(c, b as JobCancelRequest),
  },
];
