import { describe, expect, it } from 'vitest';
import {
  CHECKPOINT_ROUTES, parseBlockCommitRequest, parseBlockPullRequest, parseDiskSnapshotRequest, parseJobCancelRequest,
  parseSnapshotCreateRequest, parseSnapshotNameRequest,
} from '../../../src/vmm/api/checkpoint-routes.js';
import { formatJobs, formatListing } from '../../../src/cli/remote-checkpoints.js';

describe('checkpoint API bodies', () => {
  it('accept the documented fields', () => {
    expect(parseDiskSnapshotRequest({ disk: 'disk0', file: '/i/o.qcow2' })).toEqual({ disk: 'disk0', file: '/i/o.qcow2' });
    expect(parseSnapshotCreateRequest({ name: 'S1', disk_only: true, description: 'x', snapshot_dir: '/s' }))
      .toEqual({ name: 'S1', disk_only: true, description: 'x', snapshot_dir: '/s' });
    expect(parseSnapshotCreateRequest({ name: 'S1' })).toEqual({ name: 'S1' });
    expect(parseSnapshotNameRequest({ name: 'S1' })).toEqual({ name: 'S1' });
    expect(parseBlockCommitRequest({ disk: 'd', top: '/a', base: '/b', rate_limit: 1024 })).toEqual({ disk: 'd', top: '/a', base: '/b', rate_limit: 1024 });
    expect(parseBlockPullRequest({ disk: 'd' })).toEqual({ disk: 'd' });
    expect(parseJobCancelRequest({ id: 'job1' })).toEqual({ id: 'job1' });
  });

  it('refuse unknown fields, wrong types, relative paths and missing names, naming the field', () => {
    expect(() => parseDiskSnapshotRequest({ disk: 'd', file: 'rel.qcow2' })).toThrow(/file: "rel.qcow2" must be an absolute path/);
    expect(() => parseDiskSnapshotRequest({ disk: 'd', file: '/x', extra: 1 })).toThrow(/unknown field "extra"/);
    expect(() => parseSnapshotCreateRequest({ name: 'S', disk_only: 'yes' })).toThrow(/disk_only: expected a boolean \(true or false\), got string "yes"/);
    expect(() => parseSnapshotNameRequest({})).toThrow(/^name: required$/);
    expect(() => parseBlockCommitRequest({ disk: 'd', rate_limit: -1 })).toThrow(/rate_limit/);
    expect(() => parseJobCancelRequest([])).toThrow(/body: expected a JSON object/);
  });

  it('random bodies only ever give a ConfigError naming a field, or a parsed request', () => {
    let seed = 0x5eed;
    const rand = (): number => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 2 ** 32; };
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
    const values = [null, 0, -1, 1.5, 2 ** 60, '', 'x', '/abs/path', 'rel/path', 'a\u0000b', 'x'.repeat(5000), true, [], {}, { disk: 'd' }];
    const keys = ['disk', 'file', 'name', 'disk_only', 'description', 'snapshot_dir', 'top', 'base', 'rate_limit', 'id', 'bogus'];
    const parsers = [parseDiskSnapshotRequest, parseSnapshotCreateRequest, parseSnapshotNameRequest, parseBlockCommitRequest, parseBlockPullRequest, parseJobCancelRequest];
    for (let i = 0; i < 2000; i++) {
      const body: Record<string, unknown> = {};
      for (let k = Math.floor(rand() * 4); k > 0; k--) body[pick(keys)] = pick(values);
      const value = rand() < 0.1 ? pick(values) : body;
      try {
        const parsed = pick(parsers)(value);
        expect(typeof parsed).toBe('object');
      } catch (e) {
        expect((e as { code?: string }).code, String(e)).toBe('EINVALIDCONFIG');
      }
    }
  });

  it('routes have unique names and the methods their kinds need', () => {
    const names = CHECKPOINT_ROUTES.map((r) => r.name);
    expect(new Set(names).size).toBe(names.length);
    for (const r of CHECKPOINT_ROUTES) expect(r.method).toBe(r.kind === 'json' ? 'GET' : 'PUT');
  });
});

describe('tsvmm-remote output', () => {
  it('lists snapshots as a table with the current one marked', () => {
    const text = formatListing({
      snapshot_dir: '/s', current: 'b', snapshots: [
        { name: 'a', created: '2026-01-01T00:00:00.000Z', kind: 'system', parent: null, description: '', vm_state: 'Running', paused_ms: 12.3, current: false, size_bytes: 3 << 20, disks: [] },
        { name: 'b', created: '2026-01-02T00:00:00.000Z', kind: 'disk-only', parent: 'a', description: '', vm_state: 'Running', paused_ms: 0.5, current: true, size_bytes: 2048, disks: [] },
      ],
    });
    expect(text.split('\n')).toEqual([
      'snapshots in /s:',
      '   name  created               kind       parent  size     paused',
      '   a     2026-01-01 00:00:00Z  system     -       3.0 MiB  12.3 ms',
      '*  b     2026-01-02 00:00:00Z  disk-only  a       2 KiB    0.5 ms',
    ]);
  });

  it('shows job progress', () => {
    expect(formatJobs([{ id: 'job1', type: 'commit', disk: 'disk0', state: 'running', done: 1, total: 4, top: '/t', base: '/b', started: '' }]))
      .toBe('job1 commit disk disk0: running 25.0% (/t → /b)');
    expect(formatJobs([])).toBe('no block jobs');
  });
});
