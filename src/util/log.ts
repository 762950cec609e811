/**
 * Minimal leveled logger, to stderr or to the file of `--log-file`; the level comes from
 * --log-level or Cloud Hypervisor's `-v` count.
 */
import { writeSync } from 'node:fs';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
const ORDER: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };
let current: LogLevel = 'warn';
/** stderr, or the --log-file's descriptor. */
let fd = 2;

export function setLogLevel(level: LogLevel): void {
  current = level;
}

/** Cloud Hypervisor's `-v` count: none warn, -v info, -vv (or more) debug. */
export function logLevelFromVerbosity(count: number): LogLevel {
  return count <= 0 ? 'warn' : count === 1 ? 'info' : 'debug';
}

/** Sends log lines to `logFd` (an open file) instead of stderr. */
export function setLogFd(logFd: number): void {
  fd = logFd;
}

function emit(level: LogLevel, msg: string): void {
  // Synchronous, so the last lines before an exit are not lost.
  if (ORDER[level] <= ORDER[current]) writeSync(fd, `tsvmm: ${level === 'error' ? '' : `${level}: `}${msg}\n`);
}

export const log = {
  error: (m: string) => emit('error', m),
  warn: (m: string) => emit('warn', m),
  info: (m: string) => emit('info', m),
  debug: (m: string) => emit('debug', m),
};
