import { TsvmmError } from '../errors.js';

/**
 * A device state document (from a snapshot) that no real device could have produced: a register
 * value out of range, a queue size that is not a power of two, a FIFO longer than the hardware's.
 * Restoring stops; the snapshot is corrupt or from an incompatible build.
 */
export class DeviceStateError extends TsvmmError {
  constructor(device: string, message: string, details?: Record<string, unknown>) {
    super('EDEVSTATE', `${device}: invalid saved state: ${message}`, { device, ...details });
  }
}

/**
 * The guest driver broke the virtqueue protocol (descriptor index out of range, a loop, a buffer
 * outside guest RAM, an avail index that jumped past the queue size, bad queue configuration).
 * The device stops using the queue and reports DEVICE_NEEDS_RESET; the VMM keeps running.
 */
export class VirtqueueError extends TsvmmError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('EVIRTQ', message, details);
  }
}
