import type { VmmController } from '../controller.js';
import type { BodySchemaName } from './schema/bodies.js';

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
  /** The schema parseBody checks the body against: docs/openapi.json documents the body as this one. */
  bodySchema?: BodySchemaName;
  concurrency: Concurrency;
  /** Send the 204 before running (vmm.shutdown: the process ends while running it). */
  respondFirst?: boolean;
  /** Resolves to undefined (answered 204) or to what the action reports (answered 200 with it as JSON). */
  run: (c: VmmController, body: unknown) => Promise<unknown>;
}

export interface WebSocketRoute {
  kind: 'websocket';
  method: 'GET';
  name: string;
}

export type Route = JsonRoute | ActionRoute | WebSocketRoute;
