import type { VmmController } from '../controller.js';
import { CHECKPOINT_ROUTES } from './checkpoint-routes.js';
import { parseRestoreRequest, parseSnapshotRequest, parseVmConfigJson } from './validate.js';

/**
 * The API's route table: the one list the server dispatches from and the OpenAPI test compares
 * against docs/openapi.json. Paths are Cloud Hypervisor's, under /api/v1.
 */
export const API_BASE = '/api/v1';

/** How a state-changing request behaves when another one is still running (see op-queue.ts). */
export type Concurrency = 'exclusive' | 'queued';

export interface JsonRoute {
  kind: 'json';
  method: 'GET';
  name: string;
  /** Reads state; runs immediately, never queued. Returns the 200 body. */
  read: (c: VmmController) => unknown;
}

export interface ActionRoute {
  kind: 'action';
  method: 'PUT';
  name: string;
  /** Parses (validates) the JSON body; absent when the route takes no body. */
  parseBody?: (value: unknown) => unknown;
  concurrency: Concurrency;
  /** Send the 204 before running (vmm.shutdown: the process ends while running it). */
  respondFirst?: boolean;
  run: (c: VmmController, body: unknown) => Promise<void>;
}

export interface WebSocketRoute {
  kind: 'websocket';
  method: 'GET';
  name: string;
}

export type Route = JsonRoute | ActionRoute | WebSocketRoute;

export const ROUTES: readonly Route[] = [
  { kind: 'json', method: 'GET', name: 'vmm.ping', read: (c) => c.ping() },
  { kind: 'json', method: 'GET', name: 'vm.info', read: (c) => c.info() },
  { kind: 'json', method: 'GET', name: 'vm.counters', read: (c) => c.counters() },
  {
    kind: 'action', method: 'PUT', name: 'vm.create', concurrency: 'exclusive',
    parseBody: parseVmConfigJson, run: (c, b) => c.create(b as ReturnType<typeof parseVmConfigJson>),
  },
  { kind: 'action', method: 'PUT', name: 'vm.boot', concurrency: 'exclusive', run: (c) => c.boot() },
  { kind: 'action', method: 'PUT', name: 'vm.pause', concurrency: 'exclusive', run: (c) => c.pause() },
  { kind: 'action', method: 'PUT', name: 'vm.resume', concurrency: 'exclusive', run: (c) => c.resume() },
  // Shutting down waits for whatever is running instead of failing: the user's intent is final.
  { kind: 'action', method: 'PUT', name: 'vm.shutdown', concurrency: 'queued', run: (c) => c.shutdown() },
  { kind: 'action', method: 'PUT', name: 'vm.reboot', concurrency: 'exclusive', run: (c) => c.reboot() },
  {
    kind: 'action', method: 'PUT', name: 'vm.snapshot', concurrency: 'exclusive',
    parseBody: parseSnapshotRequest, run: (c, b) => c.snapshot(b as ReturnType<typeof parseSnapshotRequest>),
  },
  {
    kind: 'action', method: 'PUT', name: 'vm.restore', concurrency: 'exclusive',
    parseBody: parseRestoreRequest, run: (c, b) => c.restore(b as ReturnType<typeof parseRestoreRequest>),
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
