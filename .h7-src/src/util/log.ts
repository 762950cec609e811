/** Minimal leveled logger to stderr; the level comes from --log-level. */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
const ORDER: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };
let current: LogLevel = 'warn';

export function setLogLevel(level: LogLevel): void {
  current = level;
}

function emit(level: LogLevel, msg: string): void {
  if (ORDER[level] <= ORDER[current]) process.stderr.write(`tsvmm: ${level === 'error' ? '' : `${level}: `}${msg}\n`);
}

export const log = {
  error: (m: string) => emit('error', m),
  warn: (m: string) => emit('warn', m),
  info: (m: string) => emit('info', m),
  debug: (m: string) => emit('debug', m),
};
