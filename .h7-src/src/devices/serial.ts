import type { InterruptLine, PioDevice, Snapshottable } from './bus.js';
import { DeviceStateError } from './errors.js';

/**
 * A 16550A UART (the PC's COM1) as a pure state machine: 8 byte-wide registers at a port base,
 * output to a sink callback, input through `enqueueInput` with back-pressure, interrupts through
 * an edge-triggered InterruptLine that fires whenever a new interrupt cause appears.
 *
 * Transmission is instantaneous: the transmitter is always empty (LSR THRE|TEMT), so the THR-empty
 * interrupt re-arms every time the guest writes THR or sets IER.THRI, and reading IIR while it is
 * the highest cause clears it — the behaviour Linux's 8250 driver probes for in
 * serial8250_do_startup (it flags UART_BUG_THRE otherwise).
 */

// Register offsets (DLAB = LCR bit 7 switches 0/1 to the divisor latch).
export const UART_RBR_THR = 0;
export const UART_IER = 1;
export const UART_IIR_FCR = 2;
export const UART_LCR = 3;
export const UART_MCR = 4;
export const UART_LSR = 5;
export const UART_MSR = 6;
export const UART_SCR = 7;
export const UART_REGISTER_COUNT = 8;

export const IER_RDI = 0x01; // received data available
export const IER_THRI = 0x02; // transmitter holding register empty
export const IER_RLSI = 0x04; // receiver line status
export const IER_MSI = 0x08; // modem status
const IER_MASK = 0x0f;

export const IIR_NO_INT = 0x01;
export const IIR_MSI = 0x00;
export const IIR_THRI = 0x02;
export const IIR_RDI = 0x04;
export const IIR_RLSI = 0x06;
export const IIR_FIFO_ENABLED = 0xc0;

export const FCR_ENABLE_FIFO = 0x01;
export const FCR_CLEAR_RCVR = 0x02;
export const FCR_CLEAR_XMIT = 0x04;
const FCR_TRIGGER_MASK = 0xc0;

export const LCR_DLAB = 0x80;

export const MCR_DTR = 0x01;
export const MCR_RTS = 0x02;
export const MCR_OUT1 = 0x04;
export const MCR_OUT2 = 0x08;
export const MCR_LOOP = 0x10;
const MCR_MASK = 0x1f;

export const LSR_DR = 0x01;
export const LSR_OE = 0x02;
export const LSR_THRE = 0x20;
export const LSR_TEMT = 0x40;

export const MSR_DCTS = 0x01;
export const MSR_DDSR = 0x02;
export const MSR_TERI = 0x04;
export const MSR_DDCD = 0x08;
export const MSR_CTS = 0x10;
export const MSR_DSR = 0x20;
export const MSR_RI = 0x40;
export const MSR_DCD = 0x80;
const MSR_DELTA_MASK = 0x0f;
/** Outside loopback the host end is "connected": carrier, data set ready, clear to send. */
const MSR_LINES_CONNECTED = MSR_DCD | MSR_DSR | MSR_CTS;

/** 16550A receive FIFO depth; with the FIFO disabled the UART holds a single byte (16450 mode). */
export const RX_FIFO_SIZE = 16;

// Interrupt causes as a bit set, to detect new ones (edge semantics).
const CAUSE_LINE = 1;
const CAUSE_RX = 2;
const CAUSE_THR = 4;
const CAUSE_MODEM = 8;

export interface SerialState {
  ier: number;
  lcr: number;
  mcr: number;
  scr: number;
  dll: number;
  dlm: number;
  fcr: number; // FIFO enable + trigger level bits as last written (clear bits are not stored)
  overrun: boolean;
  thrPending: boolean;
  msrDelta: number;
  rx: number[];
}

export interface SerialOptions {
  interrupt: InterruptLine;
  /** Bytes the guest transmitted; called in batches (at the latest one microtask after a write). */
  output: (bytes: Uint8Array) => void;
  /** Called when the guest read input after `enqueueInput` refused some: the host may retry. */
  onInputSpace?: () => void;
}

export class Serial16550 implements PioDevice, Snapshottable<SerialState> {
  private ier = 0;
  private lcr = 0;
  private mcr = MCR_OUT2;
  private scr = 0;
  // Divisor 1 = 115200 baud, what firmware leaves behind.
  private dll = 0x01;
  private dlm = 0;
  private fcr = 0;
  private overrun = false;
  private thrPending = false;
  private msrDelta = 0;
  private rx: number[] = [];
  private inputRefused = false;

  private outBuf: number[] = [];
  private flushScheduled = false;

  constructor(private readonly opts: SerialOptions) {}

  /** Accepts up to the free FIFO space from the host; returns how many bytes were taken. */
  enqueueInput(bytes: Uint8Array): number {
    // In loopback the receiver is wired to the transmitter, not to the outside world.
    if (this.mcr & MCR_LOOP) {
      if (bytes.length > 0) this.inputRefused = true;
      return 0;
    }
    const before = this.causes();
    const n = Math.min(bytes.length, this.rxCapacity() - this.rx.length);
    for (let i = 0; i < n; i++) this.rx.push(bytes[i]!);
    if (n < bytes.length) this.inputRefused = true;
    this.raiseNew(before);
    return n;
  }

  /** Hands buffered guest output to the sink now. */
  flush(): void {
    this.flushScheduled = false;
    if (this.outBuf.length === 0) return;
    const bytes = Uint8Array.from(this.outBuf);
    this.outBuf = [];
    this.opts.output(bytes);
  }

  /**
   * The LSR value while a THR write and an LSR read have no effect other than sending the byte
   * and returning that value (DLAB clear, no loopback, no THR-empty interrupt, no error bits);
   * -1 otherwise. In that state a vCPU thread may perform those two accesses itself and hand the
   * bytes over later (src/vmm/serial-fastpath.ts): the result is the same as trapping each one.
   */
  fastPathLsr(): number {
    if (this.lcr & LCR_DLAB || this.mcr & MCR_LOOP || this.ier & IER_THRI || this.overrun) return -1;
    return this.lsr();
  }

  pioRead(offset: number, data: Uint8Array): void {
    data.fill(0);
    if (data.length === 0) return;
    data[0] = this.readRegister(offset);
  }

  pioWrite(offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    this.writeRegister(offset, data[0]!);
  }

  readRegister(offset: number): number {
    const before = this.causes();
    let value: number;
    switch (offset) {
      case UART_RBR_THR:
        if (this.lcr & LCR_DLAB) { value = this.dll; break; }
        value = this.rx.shift() ?? 0;
        if (this.inputRefused && this.rx.length < this.rxCapacity()) {
          this.inputRefused = false;
          // Deferred so the host's retry does not re-enter the register access in progress.
          const cb = this.opts.onInputSpace;
          if (cb) queueMicrotask(cb);
        }
        break;
      case UART_IER:
        value = this.lcr & LCR_DLAB ? this.dlm : this.ier;
        break;
      case UART_IIR_FCR:
        value = this.iir();
        // Reading IIR acknowledges a THR-empty interrupt when it is the one reported.
        if ((value & 0x0f) === IIR_THRI) this.thrPending = false;
        break;
      case UART_LCR:
        value = this.lcr;
        break;
      case UART_MCR:
        value = this.mcr;
        break;
      case UART_LSR:
        value = this.lsr();
        this.overrun = false; // error bits clear on read
        break;
      case UART_MSR:
        value = this.msrLines() | this.msrDelta;
        this.msrDelta = 0;
        break;
      case UART_SCR:
        value = this.scr;
        break;
      default:
        value = 0xff;
    }
    this.raiseNew(before);
    return value;
  }

  writeRegister(offset: number, value: number): void {
    const before = this.causes();
    value &= 0xff;
    switch (offset) {
      case UART_RBR_THR:
        if (this.lcr & LCR_DLAB) { this.dll = value; break; }
        this.transmit(value);
        // The byte left at once: THR is empty again.
        if (this.ier & IER_THRI) this.thrPending = true;
        break;
      case UART_IER:
        if (this.lcr & LCR_DLAB) { this.dlm = value; break; }
        this.ier = value & IER_MASK;
        this.thrPending = (this.ier & IER_THRI) !== 0;
        break;
      case UART_IIR_FCR:
        this.writeFcr(value);
        break;
      case UART_LCR:
        this.lcr = value;
        break;
      case UART_MCR:
        this.writeMcr(value & MCR_MASK);
        break;
      case UART_LSR:
      case UART_MSR:
        break; // read-only on a 16550A (factory test registers)
      case UART_SCR:
        this.scr = value;
        break;
      default:
        break;
    }
    this.raiseNew(before);
  }

  state(): SerialState {
    return {
      ier: this.ier, lcr: this.lcr, mcr: this.mcr, scr: this.scr, dll: this.dll, dlm: this.dlm,
      fcr: this.fcr, overrun: this.overrun, thrPending: this.thrPending, msrDelta: this.msrDelta,
      rx: [...this.rx],
    };
  }

  static fromState(opts: SerialOptions, s: SerialState): Serial16550 {
    const bad = (m: string): never => { throw new DeviceStateError('serial', m); };
    const byte = (name: string, v: unknown, max = 0xff): number => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) bad(`${name} must be an integer in [0, ${max}], got ${String(v)}`);
      return v as number;
    };
    if (typeof s !== 'object' || s === null) bad('state is not an object');
    const dev = new Serial16550(opts);
    dev.ier = byte('ier', s.ier, IER_MASK);
    dev.lcr = byte('lcr', s.lcr);
    dev.mcr = byte('mcr', s.mcr, MCR_MASK);
    dev.scr = byte('scr', s.scr);
    dev.dll = byte('dll', s.dll);
    dev.dlm = byte('dlm', s.dlm);
    dev.fcr = byte('fcr', s.fcr);
    if ((dev.fcr & ~(FCR_ENABLE_FIFO | FCR_TRIGGER_MASK)) !== 0) bad(`fcr 0x${dev.fcr.toString(16)} has self-clearing bits set`);
    dev.msrDelta = byte('msrDelta', s.msrDelta, MSR_DELTA_MASK);
    if (typeof s.overrun !== 'boolean' || typeof s.thrPending !== 'boolean') bad('overrun/thrPending must be booleans');
    dev.overrun = s.overrun;
    dev.thrPending = s.thrPending;
    if (!Array.isArray(s.rx)) bad('rx must be an array');
    if (s.rx.length > dev.rxCapacity()) bad(`rx holds ${s.rx.length} bytes, more than the ${dev.rxCapacity()}-byte FIFO`);
    dev.rx = s.rx.map((b, i) => byte(`rx[${i}]`, b));
    // Whatever was pending at save time must reach the restored guest again.
    if (dev.causes() !== 0) opts.interrupt.trigger();
    return dev;
  }

  // ---- internals ----------------------------------------------------------------------------

  private rxCapacity(): number {
    return this.fcr & FCR_ENABLE_FIFO ? RX_FIFO_SIZE : 1;
  }

  private transmit(value: number): void {
    if (this.mcr & MCR_LOOP) {
      // Loopback: the transmitter feeds the receiver; a full receiver overruns.
      if (this.rx.length < this.rxCapacity()) this.rx.push(value);
      else this.overrun = true;
      return;
    }
    this.outBuf.push(value);
    if (this.outBuf.length >= 4096) { this.flush(); return; }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  private writeFcr(value: number): void {
    const enable = value & FCR_ENABLE_FIFO;
    // Toggling the FIFO enable resets both FIFOs, as on the real part.
    if (enable !== (this.fcr & FCR_ENABLE_FIFO) || value & FCR_CLEAR_RCVR) this.rx = [];
    this.fcr = value & (FCR_ENABLE_FIFO | FCR_TRIGGER_MASK);
    if (this.rx.length > this.rxCapacity()) this.rx.length = this.rxCapacity();
  }

  private writeMcr(value: number): void {
    const oldLines = this.msrLines();
    this.mcr = value;
    const newLines = this.msrLines();
    const changed = oldLines ^ newLines;
    if (changed & MSR_CTS) this.msrDelta |= MSR_DCTS;
    if (changed & MSR_DSR) this.msrDelta |= MSR_DDSR;
    if (changed & MSR_DCD) this.msrDelta |= MSR_DDCD;
    // Trailing edge of ring indicator only.
    if (oldLines & MSR_RI && !(newLines & MSR_RI)) this.msrDelta |= MSR_TERI;
  }

  /** Modem input lines: in loopback they mirror MCR (DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD). */
  private msrLines(): number {
    if (!(this.mcr & MCR_LOOP)) return MSR_LINES_CONNECTED;
    let lines = 0;
    if (this.mcr & MCR_DTR) lines |= MSR_DSR;
    if (this.mcr & MCR_RTS) lines |= MSR_CTS;
    if (this.mcr & MCR_OUT1) lines |= MSR_RI;
    if (this.mcr & MCR_OUT2) lines |= MSR_DCD;
    return lines;
  }

  private lsr(): number {
    let v = LSR_THRE | LSR_TEMT;
    if (this.rx.length > 0) v |= LSR_DR;
    if (this.overrun) v |= LSR_OE;
    return v;
  }

  /** Enabled and asserted interrupt causes. */
  private causes(): number {
    let c = 0;
    if (this.ier & IER_RLSI && this.overrun) c |= CAUSE_LINE;
    if (this.ier & IER_RDI && this.rx.length > 0) c |= CAUSE_RX;
    if (this.ier & IER_THRI && this.thrPending) c |= CAUSE_THR;
    if (this.ier & IER_MSI && this.msrDelta !== 0) c |= CAUSE_MODEM;
    return c;
  }

  private iir(): number {
    const fifo = this.fcr & FCR_ENABLE_FIFO ? IIR_FIFO_ENABLED : 0;
    const c = this.causes();
    if (c & CAUSE_LINE) return fifo | IIR_RLSI;
    if (c & CAUSE_RX) return fifo | IIR_RDI;
    if (c & CAUSE_THR) return fifo | IIR_THRI;
    if (c & CAUSE_MODEM) return fifo | IIR_MSI;
    return fifo | IIR_NO_INT;
  }

  private raiseNew(before: number): void {
    if (this.causes() & ~before) this.opts.interrupt.trigger();
  }
}
