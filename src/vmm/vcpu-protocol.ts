import type { AddressRange } from '../devices/bus.js';
import type { SerialShareInit } from './serial-fastpath.js';

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

export const enum AccessKind {
  PioIn = 1,
  PioOut = 2,
  MmioRead = 3,
  MmioWrite = 4,
}

/** Exit counters kept per vCPU (names as vm.counters reports them). */
export const EXIT_COUNTERS = ['io', 'mmio', 'intr', 'hlt', 'other'] as const;
export type ExitCounter = (typeof EXIT_COUNTERS)[number];

/**
 * Port accesses the worker answered itself because no device claims the port (reads float high,
 * writes vanish): a counter slot after the exit counters. Linux probes PCI configuration space
 * this way; on an AMD family 0Fh CPU (QEMU's TCG `-cpu max`) its GART checks scan every PCI bus
 * and slot twice, which took ~22 s of a nested boot as round trips to the main thread and takes 3 s
 * answered here.
 */
export const UNCLAIMED_PORTS_COUNTER = EXIT_COUNTERS.length;

export interface Mailbox {
  readonly sab: SharedArrayBuffer;
  readonly words: Int32Array;
  readonly data: Uint8Array;
  readonly counters: Float64Array;
}

export function createMailbox(sab = new SharedArrayBuffer(MAILBOX_BYTES)): Mailbox {
  return {
    sab,
    words: new Int32Array(sab, 0, 16),
    data: new Uint8Array(sab, DATA_OFFSET, DATA_BYTES),
    counters: new Float64Array(sab, COUNTERS_OFFSET, UNCLAIMED_PORTS_COUNTER + 1),
  };
}

export function counterIndex(name: ExitCounter): number {
  return EXIT_COUNTERS.indexOf(name);
}

/** Why a worker's run loop ended. */
export type StopReason =
  | { kind: 'kicked' }
  | { kind: 'shutdown'; where: string }
  | { kind: 'system_event'; type: number }
  | { kind: 'internal_error'; suberror: number; message: string }
  | { kind: 'fail_entry'; reason: string }
  | { kind: 'error'; code: string; message: string };

/** Methods of VcpuFd the main thread may call in a paused worker (state save/restore). */
export const VCPU_CALLS = [
  'getRegs', 'setRegs', 'getSregs', 'setSregs', 'getFpu', 'setFpu', 'getXsave', 'setXsave',
  'getXcrs', 'setXcrs', 'getMsrs', 'setMsrs', 'setCpuid2', 'getLapic', 'setLapic',
  'getVcpuEvents', 'setVcpuEvents', 'getMpState', 'setMpState', 'getDebugregs', 'setDebugregs',
  'getTscKhz', 'getCpuid2',
] as const;
export type VcpuCall = (typeof VCPU_CALLS)[number];

/** What a worker may answer without the main thread. */
export interface WorkerFastPaths {
  serial: SerialShareInit | undefined;
  /** The ports devices claim (fixed once vCPUs run); an access to any other port is unclaimed. */
  claimedPorts: AddressRange[];
}

export type ToWorker =
  | { type: 'init'; vcpuId: number; fd: number; runAddress: bigint; runSize: number; mailbox: SharedArrayBuffer; fastPaths: WorkerFastPaths }
  | { type: 'run' }
  | { type: 'call'; id: number; method: VcpuCall; args: unknown[] }
  | { type: 'exit' };

export type FromWorker =
  | { type: 'ready'; threadId: bigint }
  | { type: 'stopped'; reason: StopReason }
  | { type: 'result'; id: number; ok: true; value: unknown }
  | { type: 'result'; id: number; ok: false; error: { code: string; message: string } };
