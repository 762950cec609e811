/**
 * The power-off port (isa-debug-exit style, port 0xf4, 4 bytes wide): a write of value v asks the
 * VMM to end with exit status v & 0xff. Accesses of any width at any offset in the range count,
 * the value being the little-endian bytes written. Reads return all-ones.
 */
export const DEBUG_EXIT_PORT = 0xf4;
export const DEBUG_EXIT_SIZE = 4;
export class DebugExit {
    onPowerOff;
    constructor(onPowerOff) {
        this.onPowerOff = onPowerOff;
    }
    pioRead(_offset, data) {
        data.fill(0xff);
    }
    pioWrite(_offset, data) {
        if (data.length === 0)
            return;
        // Only the low byte of v matters for the status.
        this.onPowerOff(data[0] & 0xff);
    }
}
//# sourceMappingURL=debug-exit.js.map