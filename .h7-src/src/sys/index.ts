export * from './errno.js';
export * from './libc.js';
export * from './eventfd.js';
