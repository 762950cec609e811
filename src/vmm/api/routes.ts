import type { Route } from './route.js';
import { CHECKPOINT_ROUTES } from './checkpoint-routes.js';
import { parseResizeDiskRequest, parseRestoreRequest, parseSnapshotRequest, parseVmConfigJson } from './validate.js';

/**
 * The API's route table: the one list the server dispatches from and the OpenAPI test compares
 * against docs/openapi.json. Paths are Cloud Hypervisor's, under /api/v1.
 */
export const API_BASE = '/api/v1';

export const ROUTES: readonly Route[] = [
  { kind: 'json', method: 'GET', name: 'vmm.ping', read: (c) => c.ping() },
  { kind: 'json', method: 'GET', name: 'vm.info', read: (c) => c.info() },
  { kind: 'json', method: 'GET', name: 'vm.counters', read: (c) => c.counters() },
  {
    kind: 'action', method: 'PUT', name: 'vm.create', concurrency: 'exclusive',
    parseBody: parseVmConfigJson, bodySchema: 'VmConfig', run: (c, b) => c.create(b as ReturnType<typeof parseVmConfigJson>),
  },
  { kind: 'action', method: 'PUT', name: 'vm.boot', concurrency: 'exclusive', run: (c) => c.boot() },
  { kind: 'action', method: 'PUT', name: 'vm.pause', concurrency: 'exclusive', run: (c) => c.pause() },
  { kind: 'action', method: 'PUT', name: 'vm.resume', concurrency: 'exclusive', run: (c) => c.resume() },
  // Shutting down waits for whatever is running instead of failing: the user's intent is final.
  { kind: 'action', method: 'PUT', name: 'vm.shutdown', concurrency: 'queued', run: (c) => c.shutdown() },
  { kind: 'action', method: 'PUT', name: 'vm.delete', concurrency: 'queued', run: (c) => c.delete() },
  { kind: 'action', method: 'PUT', name: 'vm.reboot', concurrency: 'exclusive', run: (c) => c.reboot() },
  { kind: 'action', method: 'PUT', name: 'vm.power-button', concurrency: 'exclusive', run: (c) => c.powerButton() },
  {
    kind: 'action', method: 'PUT', name: 'vm.snapshot', concurrency: 'exclusive',
    parseBody: parseSnapshotRequest, bodySchema: 'VmSnapshotConfig', run: (c, b) => c.snapshot(b as ReturnType<typeof parseSnapshotRequest>),
  },
  {
    kind: 'action', method: 'PUT', name: 'vm.restore', concurrency: 'exclusive',
    parseBody: parseRestoreRequest, bodySchema: 'RestoreConfig', run: (c, b) => c.restore(b as ReturnType<typeof parseRestoreRequest>),
  },
  {
    kind: 'action', method: 'PUT', name: 'vm.resize-disk', concurrency: 'exclusive',
    parseBody: parseResizeDiskRequest, bodySchema: 'VmResizeDiskConfig', run: (c, b) => c.resizeDisk(b as ReturnType<typeof parseResizeDiskRequest>),
  },
  {
    kind: 'action', method: 'PUT', name: 'vmm.shutdown', concurrency: 'queued', respondFirst: true,
    run: (c) => c.shutdownVmm(),
  },
  // Disk snapshots, named checkpoints and block jobs (checkpoint-routes.ts).
  ...CHECKPOINT_ROUTES,
  { kind: 'websocket', method: 'GET', name: 'vmm.events' },
  { kind: 'websocket', method: 'GET', name: 'vm.console' },
];

export function routePath(route: Route): string {
  return `${API_BASE}/${route.name}`;
}

const BY_PATH: ReadonlyMap<string, Route> = new Map(ROUTES.map((r) => [routePath(r), r]));

export function findRoute(path: string): Route | undefined {
  return BY_PATH.get(path);
}
