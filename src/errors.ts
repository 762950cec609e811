import type { ErrorCode } from './error-codes.js';

/**
 * One base error for the whole project. Every layer subclasses it with a stable `code` so that
 * callers (CLI exit paths, HTTP status mapping, worker messages) can branch on codes, not on text.
 * Messages are written for the person who has to act on them: say what failed and what to do.
 * The codes, their HTTP statuses and meanings are one table: error-codes.ts.
 */
export class TsvmmError extends Error {
  readonly code: string;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.details = details;
  }

  /** Plain data, for crossing a worker boundary or going into a JSON error body. */
  toJSON(): { code: string; message: string; details?: Record<string, unknown> } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/** Bad user input: flags, config values, API bodies. Maps to exit status 2 / HTTP 400. */
export class ConfigError extends TsvmmError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('EINVALIDCONFIG', message, details);
  }
}
