import type { PioDevice } from './bus.js';

/**
 * The power-off port (isa-debug-exit style, port 0xf4, 4 bytes wide): a write of value v asks the
 * VMM to end with exit status v & 0xff. Accesses of any width at any offset in the range count,
 * the value being the little-endian bytes written. Reads return all-ones.
 */
export const DEBUG_EXIT_PORT = 0xf4;
export const DEBUG_EXIT_SIZE = 4;

export class DebugExit implements PioDevice {
  constructor(private readonly onPowerOff: (status: number) => void) {}

  pioRead(_offset: number, data: Uint8Array): void {
    data.fill(0xff);
  }

  pioWrite(_offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    // Only the low byte of v matters for the status.
    this.onPowerOff(data[0]! & 0xff);
  }
}
