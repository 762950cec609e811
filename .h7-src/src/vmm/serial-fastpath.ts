/**
 * Guests print by polling LSR and writing THR, one trapped port access each: through the main
 * thread's device bus that is a cross-thread round trip per byte (tens of microseconds). While the
 * UART is in a state where those two accesses have no side effect besides sending the byte
 * (Serial16550.fastPathLsr), the vCPU thread answers LSR reads from shared memory and appends THR
 * bytes to a shared ring; the main thread drains the ring into the UART.
 *
 * Exactness: the UART's state changes only through trapped accesses (and host input, which only
 * touches the receiver), and the main thread drains the ring before it handles any trapped
 * access, so every byte reaches the UART in guest order and in the state it was written in.
 */
import type { PioDevice } from '../devices/bus.js';
import { UART_LSR, UART_RBR_THR, type Serial16550 } from '../devices/serial.js';

const WORD_FAST_LSR = 0;
const WORD_LOCK = 1;
const WORD_HEAD = 2;
const WORD_TAIL = 3;
const WORD_DOORBELL = 4;
const HEADER_BYTES = 64;
const RING_BYTES = 64 * 1024;

export const SERIAL_SHARE_BYTES = HEADER_BYTES + RING_BYTES;

/** What a vCPU worker needs to take the fast path. */
export interface SerialShareInit {
  sab: SharedArrayBuffer;
  port: number;
}

/** Worker side: handles the two fast accesses or says it cannot. */
export class SerialFastPathClient {
  private readonly words: Int32Array;
  private readonly ring: Uint8Array;
  readonly thrPort: number;
  readonly lsrPort: number;

  constructor(init: SerialShareInit) {
    this.words = new Int32Array(init.sab, 0, HEADER_BYTES / 4);
    this.ring = new Uint8Array(init.sab, HEADER_BYTES, RING_BYTES);
    this.thrPort = init.port + UART_RBR_THR;
    this.lsrPort = init.port + UART_LSR;
  }

  /** The LSR value to return, or -1 when the access must be trapped to the main thread. */
  lsr(): number {
    return Atomics.load(this.words, WORD_FAST_LSR);
  }

  /** Queues guest bytes written to THR; false when the access must be trapped instead. */
  write(bytes: Uint8Array): boolean {
    const w = this.words;
    if (Atomics.load(w, WORD_FAST_LSR) < 0) return false;
    while (Atomics.compareExchange(w, WORD_LOCK, 0, 1) !== 0) { /* another vCPU is appending: a few instructions */ }
    try {
      const head = w[WORD_HEAD]!;
      const tail = Atomics.load(w, WORD_TAIL);
      if (head - tail + bytes.length > RING_BYTES) return false;
      for (let i = 0; i < bytes.length; i++) this.ring[(head + i) % RING_BYTES] = bytes[i]!;
      Atomics.store(w, WORD_HEAD, head + bytes.length);
    } finally {
      Atomics.store(w, WORD_LOCK, 0);
    }
    Atomics.add(w, WORD_DOORBELL, 1);
    Atomics.notify(w, WORD_DOORBELL);
    return true;
  }
}

/**
 * Main side: owns the shared page, keeps the fast-path LSR value current, and stands in front of
 * the UART on the port bus so trapped accesses see every fast-path byte first.
 */
export class SerialFastPath implements PioDevice {
  readonly sab = new SharedArrayBuffer(SERIAL_SHARE_BYTES);
  private readonly words = new Int32Array(this.sab, 0, HEADER_BYTES / 4);
  private readonly ring = new Uint8Array(this.sab, HEADER_BYTES, RING_BYTES);
  private closed = false;

  constructor(readonly serial: Serial16550, readonly port: number) {
    this.publish();
    void this.serve();
  }

  init(): SerialShareInit {
    return { sab: this.sab, port: this.port };
  }

  /** Recomputes the fast-path LSR after anything that may have changed the UART's state. */
  publish(): void {
    Atomics.store(this.words, WORD_FAST_LSR, this.serial.fastPathLsr());
  }

  /** Moves queued fast-path bytes into the UART, in order. */
  drain(): void {
    const w = this.words;
    const head = Atomics.load(w, WORD_HEAD);
    let tail = w[WORD_TAIL]!;
    if (head === tail) return;
    for (; tail !== head; tail++) this.serial.writeRegister(UART_RBR_THR, this.ring[tail % RING_BYTES]!);
    Atomics.store(w, WORD_TAIL, tail);
  }

  pioRead(offset: number, data: Uint8Array): void {
    this.drain();
    this.serial.pioRead(offset, data);
    this.publish();
  }

  pioWrite(offset: number, data: Uint8Array): void {
    this.drain();
    this.serial.pioWrite(offset, data);
    this.publish();
  }

  private async serve(): Promise<void> {
    const w = this.words;
    while (!this.closed) {
      const seen = Atomics.load(w, WORD_DOORBELL);
      this.drain();
      const r = Atomics.waitAsync(w, WORD_DOORBELL, seen);
      if (r.async) await r.value;
    }
  }

  close(): void {
    this.drain();
    this.closed = true;
    // Wake the waiter so serve() ends.
    Atomics.add(this.words, WORD_DOORBELL, 1);
    Atomics.notify(this.words, WORD_DOORBELL);
  }
}
