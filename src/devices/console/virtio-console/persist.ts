/** What a virtio-console device saves in a snapshot, and the checks its restore makes. */
import { DeviceStateError } from '../../errors.js';

export interface VirtioConsoleState {
  cols: number;
  rows: number;
  /** Host input the guest had not taken yet (no receive buffers), base64: it is not lost. */
  pendingInput: string;
}

/** Bytes of host input held for a guest that posts no receive buffers; beyond this, input is dropped. */
export const MAX_PENDING_INPUT = 1024 * 1024;

const stateError = (message: string): never => {
  throw new DeviceStateError('virtio-console', message);
};

const isU16 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff;

/** `s` as a VirtioConsoleState, or DeviceStateError naming what is wrong. */
export function parseVirtioConsoleState(s: unknown): VirtioConsoleState {
  if (typeof s !== 'object' || s === null) stateError('state is not an object');
  const o = s as Record<string, unknown>;
  if (!isU16(o.cols) || !isU16(o.rows)) stateError('cols and rows must be 16-bit values');
  if (typeof o.pendingInput !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(o.pendingInput)) stateError('pendingInput is not base64');
  const pending = o.pendingInput as string;
  if (Math.floor(pending.length * 3 / 4) > MAX_PENDING_INPUT) stateError(`pendingInput is longer than ${MAX_PENDING_INPUT} bytes`);
  return { cols: o.cols as number, rows: o.rows as number, pendingInput: pending };
}
