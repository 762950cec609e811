/**
 * The protocol between the main thread and a vCPU worker thread.
 *
 * Two channels:
 *  - messages (postMessage) for rare, asynchronous things: init, run, stopped, state calls;
 *  - a shared mailbox (SharedArrayBuffer + Atomics) for the hot path: a port or MMIO exit that the
 *    main thread's device bus must answer before the vCPU may continue. The worker fills in the
 *    request, flips `WORD_STATE` to REQUEST and sleeps in Atomics.wait; the main thread, woken by
 *    Atomics.waitAsync, answers and flips it to RESPONSE.
 * The same buffer carries the stop request (`WORD_CONTROL`) and per-vCPU exit counters, which the
 * main thread reads without a round trip.
 */
export const MAILBOX_BYTES = 64 + 4096 + 64;
/** Data area for port/MMIO payloads: string I/O can move up to a page per exit. */
export const DATA_OFFSET = 64;
export const DATA_BYTES = 4096;
const COUNTERS_OFFSET = DATA_OFFSET + DATA_BYTES;
export const WORD_STATE = 0;
export const WORD_KIND = 1;
export const WORD_ADDR_LO = 2;
export const WORD_ADDR_HI = 3;
export const WORD_SIZE = 4;
export const WORD_COUNT = 5;
export const WORD_CONTROL = 6;
export const STATE_IDLE = 0;
export const STATE_REQUEST = 1;
export const STATE_RESPONSE = 2;
export const CONTROL_RUN = 0;
export const CONTROL_STOP = 1;
/** Exit counters kept per vCPU (names as vm.counters reports them). */
export const EXIT_COUNTERS = ['io', 'mmio', 'intr', 'hlt', 'other'];
export function createMailbox(sab = new SharedArrayBuffer(MAILBOX_BYTES)) {
    return {
        sab,
        words: new Int32Array(sab, 0, 16),
        data: new Uint8Array(sab, DATA_OFFSET, DATA_BYTES),
        counters: new Float64Array(sab, COUNTERS_OFFSET, EXIT_COUNTERS.length),
    };
}
export function counterIndex(name) {
    return EXIT_COUNTERS.indexOf(name);
}
/** Methods of VcpuFd the main thread may call in a paused worker (state save/restore). */
export const VCPU_CALLS = [
    'getRegs', 'setRegs', 'getSregs', 'setSregs', 'getFpu', 'setFpu', 'getXsave', 'setXsave',
    'getXcrs', 'setXcrs', 'getMsrs', 'setMsrs', 'setCpuid2', 'getLapic', 'setLapic',
    'getVcpuEvents', 'setVcpuEvents', 'getMpState', 'setMpState', 'getDebugregs', 'setDebugregs',
    'getTscKhz', 'getCpuid2',
];
//# sourceMappingURL=vcpu-protocol.js.map