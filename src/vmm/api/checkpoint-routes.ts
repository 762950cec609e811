/**
 * API routes of disk snapshots, named checkpoints and block jobs (src/vmm/checkpoints/,
 * src/vmm/jobs/). Bodies are checked by their schemas (schema/bodies.ts), as the rest of the API:
 * unknown fields and wrong types are 400s that name the field.
 */
import type { VmmController } from '../controller.js';
import { NoVmError } from '../errors.js';
import type { DiskSnapshotRequest, SnapshotCreateRequest, SnapshotNameRequest } from '../checkpoints/types.js';
import type { BlockCommitRequest, BlockPullRequest, JobCancelRequest } from '../jobs/types.js';
import type { Route } from './route.js';
import { BlockCommitConfig, BlockPullConfig, DiskSnapshotConfig, JobCancelConfig, SnapshotCreateConfig, SnapshotNameConfig } from './schema/bodies.js';
import { validateJson } from './schema/validate-json.js';

export function parseDiskSnapshotRequest(value: unknown): DiskSnapshotRequest {
  return validateJson(DiskSnapshotConfig, value);
}

export function parseSnapshotCreateRequest(value: unknown): SnapshotCreateRequest {
  return validateJson(SnapshotCreateConfig, value);
}

export function parseSnapshotNameRequest(value: unknown): SnapshotNameRequest {
  return validateJson(SnapshotNameConfig, value);
}

export function parseBlockCommitRequest(value: unknown): BlockCommitRequest {
  return validateJson(BlockCommitConfig, value);
}

export function parseBlockPullRequest(value: unknown): BlockPullRequest {
  return validateJson(BlockPullConfig, value);
}

export function parseJobCancelRequest(value: unknown): JobCancelRequest {
  return validateJson(JobCancelConfig, value);
}

/** A controller without the optional disk-snapshot methods (a test double) answers like no VM. */
function need<T>(m: T | undefined): T {
  if (m === undefined) throw new NoVmError('this VMM does not support disk snapshots');
  return m;
}

export const CHECKPOINT_ROUTES: readonly Route[] = [
  {
    kind: 'action', method: 'PUT', name: 'vm.snapshot-disk', concurrency: 'exclusive',
    parseBody: parseDiskSnapshotRequest, bodySchema: 'DiskSnapshotConfig', run: (c, b) => need(c.snapshotDisk).call(c, b as DiskSnapshotRequest),
  },
  {
    kind: 'action', method: 'PUT', name: 'vm.snapshot-create', concurrency: 'exclusive',
    parseBody: parseSnapshotCreateRequest, bodySchema: 'SnapshotCreateConfig', run: (c, b) => need(c.snapshotCreate).call(c, b as SnapshotCreateRequest),
  },
  { kind: 'json', method: 'GET', name: 'vm.snapshot-list', read: (c: VmmController) => need(c.snapshotList).call(c, {}) },
  {
    kind: 'action', method: 'PUT', name: 'vm.snapshot-revert', concurrency: 'exclusive',
    parseBody: parseSnapshotNameRequest, bodySchema: 'SnapshotNameConfig', run: (c, b) => need(c.snapshotRevert).call(c, b as SnapshotNameRequest),
  },
  {
    kind: 'action', method: 'PUT', name: 'vm.snapshot-delete', concurrency: 'exclusive',
    parseBody: parseSnapshotNameRequest, bodySchema: 'SnapshotNameConfig', run: (c, b) => need(c.snapshotDelete).call(c, b as SnapshotNameRequest),
  },
  { kind: 'json', method: 'GET', name: 'vm.disk-operation', read: (c: VmmController) => need(c.lastDiskOperation).call(c) },
  {
    kind: 'action', method: 'PUT', name: 'vm.block-commit', concurrency: 'exclusive',
    parseBody: parseBlockCommitRequest, bodySchema: 'BlockCommitConfig', run: (c, b) => need(c.blockCommit).call(c, b as BlockCommitRequest),
  },
  {
    kind: 'action', method: 'PUT', name: 'vm.block-pull', concurrency: 'exclusive',
    parseBody: parseBlockPullRequest, bodySchema: 'BlockPullConfig', run: (c, b) => need(c.blockPull).call(c, b as BlockPullRequest),
  },
  { kind: 'json', method: 'GET', name: 'vm.jobs', read: (c: VmmController) => need(c.blockJobs).call(c) },
  {
    kind: 'action', method: 'PUT', name: 'vm.job-cancel', concurrency: 'exclusive',
    parseBody: parseJobCancelRequest, bodySchema: 'JobCancelConfig', run: (c, b) => need(c.blockJobCancel).call(c, b as JobCancelRequest),
  },
];
