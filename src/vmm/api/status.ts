import { TsvmmError } from '../../errors.js';

/**
 * Error code → HTTP status, Cloud Hypervisor's conventions: 400 for a bad body or a request that
 * is invalid in this state, 404 for no VM or no route, 409 for conflicts, 500 for everything else.
 * The API-layer codes (ENOROUTE, EMETHOD, ...) are thrown by the server itself (http-errors.ts).
 */
const STATUS_BY_CODE: ReadonlyMap<string, number> = new Map([
  ['ENOVM', 404],
  ['ENOSNAPSHOT', 404],
  ['ENOROUTE', 404],
  ['EINVALIDSTATE', 400],
  ['EINVALIDCONFIG', 400],
  // Inputs the request named that turn out unusable: a missing or malformed kernel, a corrupt
  // snapshot, more RAM than the host can give.
  ['EINPUTFILE', 400],
  ['EKERNELFORMAT', 400],
  ['EBOOTLAYOUT', 400],
  ['ECMDLINE', 400],
  ['ESNAPSHOT', 400],
  ['EGUESTRAM', 400],
  ['EQCOW2', 400],
  ['EIMAGELOCKED', 409],
  ['EBADREQUEST', 400],
  ['EMETHOD', 405],
  ['ETIMEOUT', 408],
  ['ECONFLICT', 409],
  ['ETOOLARGE', 413],
  ['EUPGRADE', 426],
  ['EHEADERS', 431],
]);

export function httpStatusForCode(code: string): number {
  return STATUS_BY_CODE.get(code) ?? 500;
}

/** The JSON error body every non-2xx response carries: `{"error": {"code", "message"}}`. */
export interface ApiErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

/** Turns anything thrown into a status and a body; non-TsvmmErrors become EINTERNAL / 500. */
export function errorResponse(err: unknown): { status: number; body: ApiErrorBody } {
  if (err instanceof TsvmmError) {
    return { status: httpStatusForCode(err.code), body: { error: err.toJSON() } };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { status: 500, body: { error: { code: 'EINTERNAL', message: `internal error: ${message}` } } };
}

/** JSON text for a response or event; 64-bit counters may be bigints: numbers while exact, else decimal strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v !== 'bigint') return v;
    return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v.toString();
  });
}
