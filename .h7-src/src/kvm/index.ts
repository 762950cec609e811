export * from './errors.js';
export * from './ioctls.js';
export * from './structs.js';
export * from './system.js';
export * from './vm.js';
export * from './vcpu.js';
export type * from './types.js';
