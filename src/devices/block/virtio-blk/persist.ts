/** What a virtio-blk device saves in a snapshot, and the checks its restore makes. */
import { DeviceStateError } from '../../errors.js';

export interface VirtioBlkState {
  capacitySectors: number;
  readOnly: boolean;
  serial: string;
  queueSize: number;
}

export const stateError = (message: string): never => {
  throw new DeviceStateError('virtio-blk', message);
};

/** `s` as a VirtioBlkState, or DeviceStateError when a field is missing or of the wrong type. */
export function parseVirtioBlkState(s: unknown): VirtioBlkState {
  if (typeof s !== 'object' || s === null) stateError('state is not an object');
  const o = s as Record<string, unknown>;
  if (typeof o.serial !== 'string' || typeof o.readOnly !== 'boolean' || typeof o.queueSize !== 'number' || typeof o.capacitySectors !== 'number') {
    stateError('state fields have wrong types');
  }
  return o as unknown as VirtioBlkState;
}

/** Refuses a disk that is not the one the state was saved with (size, writability). */
export function checkSameDisk(s: VirtioBlkState, capacitySectors: number, readOnly: boolean): void {
  if (capacitySectors !== s.capacitySectors) stateError(`disk has ${capacitySectors} sectors but the snapshot expects ${s.capacitySectors}`);
  if (readOnly !== s.readOnly) stateError(`disk is ${readOnly ? 'read-only' : 'writable'} but was ${s.readOnly ? 'read-only' : 'writable'} when saved`);
}
