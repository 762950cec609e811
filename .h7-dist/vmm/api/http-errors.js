import { TsvmmError } from '../../errors.js';
/** Errors the API server raises itself, before a request reaches the VMM. Statuses: status.ts. */
export class RouteNotFoundError extends TsvmmError {
    constructor(path) {
        super('ENOROUTE', `no such API endpoint: ${path} (endpoints live under /api/v1, e.g. /api/v1/vmm.ping)`);
    }
}
export class MethodNotAllowedError extends TsvmmError {
    allow;
    constructor(method, path, allow) {
        super('EMETHOD', `${method} is not allowed on ${path}; use ${allow.join(' or ')}`, { allow });
        this.allow = allow;
    }
}
export class BadRequestError extends TsvmmError {
    constructor(message) {
        super('EBADREQUEST', message);
    }
}
export class BodyTooLargeError extends TsvmmError {
    constructor(limit) {
        super('ETOOLARGE', `request body exceeds the ${limit}-byte limit`);
    }
}
export class UpgradeRequiredError extends TsvmmError {
    constructor(path) {
        super('EUPGRADE', `${path} is a WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket)`);
    }
}
/** A request Node's HTTP parser rejected: malformed, headers too large, or not received in time. */
export class HttpProtocolError extends TsvmmError {
    constructor(code, message) {
        super(code, message);
    }
}
//# sourceMappingURL=http-errors.js.map