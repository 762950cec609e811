import { TsvmmError } from '../../errors.js';

/** Errors the API server raises itself, before a request reaches the VMM. Statuses: status.ts. */

export class RouteNotFoundError extends TsvmmError {
  constructor(path: string) {
    super('ENOROUTE', `no such API endpoint: ${path} (endpoints live under /api/v1, e.g. /api/v1/vmm.ping)`);
  }
}

export class MethodNotAllowedError extends TsvmmError {
  readonly allow: string[];
  constructor(method: string, path: string, allow: string[]) {
    super('EMETHOD', `${method} is not allowed on ${path}; use ${allow.join(' or ')}`, { allow });
    this.allow = allow;
  }
}

export class BadRequestError extends TsvmmError {
  constructor(message: string) {
    super('EBADREQUEST', message);
  }
}

export class BodyTooLargeError extends TsvmmError {
  constructor(limit: number) {
    super('ETOOLARGE', `request body exceeds the ${limit}-byte limit`);
  }
}

export class UpgradeRequiredError extends TsvmmError {
  constructor(path: string) {
    super('EUPGRADE', `${path} is a WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket)`);
  }
}

/** A request Node's HTTP parser rejected: malformed, headers too large, or not received in time. */
export class HttpProtocolError extends TsvmmError {
  constructor(code: 'EBADREQUEST' | 'EHEADERS' | 'ETIMEOUT', message: string) {
    super(code, message);
  }
}
