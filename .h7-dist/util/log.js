const ORDER = { error: 0, warn: 1, info: 2, debug: 3 };
let current = 'warn';
export function setLogLevel(level) {
    current = level;
}
function emit(level, msg) {
    if (ORDER[level] <= ORDER[current])
        process.stderr.write(`tsvmm: ${level === 'error' ? '' : `${level}: `}${msg}\n`);
}
export const log = {
    error: (m) => emit('error', m),
    warn: (m) => emit('warn', m),
    info: (m) => emit('info', m),
    debug: (m) => emit('debug', m),
};
//# sourceMappingURL=log.js.map