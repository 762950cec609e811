import { TsvmmError } from '../errors.js';

/**
 * Lifecycle errors the VMM (src/vmm/vmm.ts) throws through the `VmmController` interface. The API
 * maps their codes to HTTP statuses (src/vmm/api/status.ts); the CLI prints their messages.
 */

/** The request needs a VM and none has been created (or restored) yet. HTTP 404. */
export class NoVmError extends TsvmmError {
  constructor(message = 'no VM has been created: send vm.create (or vm.restore) first') {
    super('ENOVM', message);
  }
}

/** The request is not valid in the VM's current state (e.g. snapshot while running). HTTP 400. */
export class InvalidStateError extends TsvmmError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('EINVALIDSTATE', message, details);
  }
}

/** The request conflicts with an operation already in progress or a held resource. HTTP 409. */
export class ConflictError extends TsvmmError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ECONFLICT', message, details);
  }
}

/** A file the configuration names (kernel, initramfs, disk, serial file) cannot be used. HTTP 400. */
export class InputFileError extends TsvmmError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('EINPUTFILE', message, details);
  }
}
