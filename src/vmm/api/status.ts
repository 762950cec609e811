import { httpStatusForCode } from '../../error-codes.js';
import { TsvmmError } from '../../errors.js';

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
