import { describe, expect, it } from 'vitest';
import {
  Serial16550, UART_IER, UART_IIR_FCR, UART_LCR, UART_LSR, UART_MCR, UART_MSR, UART_RBR_THR, UART_SCR,
  IER_RDI, IER_THRI, IER_RLSI, IER_MSI, IIR_NO_INT, IIR_THRI, IIR_RDI, IIR_RLSI, IIR_MSI, IIR_FIFO_ENABLED,
  FCR_ENABLE_FIFO, FCR_CLEAR_RCVR, LCR_DLAB, MCR_LOOP, MCR_DTR, MCR_RTS, MCR_OUT1, MCR_OUT2,
  LSR_DR, LSR_OE, LSR_THRE, LSR_TEMT, MSR_CTS, MSR_DCD, MSR_DSR, MSR_RI, MSR_DCTS, MSR_DDCD, MSR_TERI,
  RX_FIFO_SIZE, type SerialState,
} from '../../src/devices/serial.js';
import { DeviceStateError } from '../../src/devices/errors.js';

function setup() {
  const out: number[] = [];
  const irq = { count: 0, trigger() { this.count++; } };
  let spaceCalls = 0;
  const uart = new Serial16550({ interrupt: irq, output: (b) => out.push(...b), onInputSpace: () => { spaceCalls++; } });
  const rd = (off: number) => uart.readRegister(off);
  const wr = (off: number, v: number) => uart.writeRegister(off, v);
  return { uart, out, irq, rd, wr, spaces: () => spaceCalls };
}

describe('16550A reset state', () => {
  it('reads idle registers', () => {
    const { rd } = setup();
    expect(rd(UART_IIR_FCR)).toBe(IIR_NO_INT);
    expect(rd(UART_LSR)).toBe(LSR_THRE | LSR_TEMT);
    expect(rd(UART_MSR)).toBe(MSR_DCD | MSR_DSR | MSR_CTS);
    expect(rd(UART_IER)).toBe(0);
    expect(rd(UART_LCR)).toBe(0);
  });

  it('works through the PioDevice interface with 1-byte accesses', () => {
    const { uart } = setup();
    uart.pioWrite(UART_SCR, new Uint8Array([0x5a]));
    const d = new Uint8Array(1);
    uart.pioRead(UART_SCR, d);
    expect(d[0]).toBe(0x5a);
  });
});

describe("Linux 8250 autoconfig() probe", () => {
  it('passes the IER test, the loopback test and detects a 16550A', () => {
    const { rd, wr, out } = setup();
    // IER read/write test (skipped only for UPF_BUGGY_UART).
    const scratch = rd(UART_IER);
    wr(UART_IER, 0);
    const scratch2 = rd(UART_IER) & 0x0f;
    wr(UART_IER, 0x0f);
    const scratch3 = rd(UART_IER) & 0x0f;
    wr(UART_IER, scratch);
    expect(scratch2).toBe(0);
    expect(scratch3).toBe(0x0f);

    const saveMcr = rd(UART_MCR);
    const saveLcr = rd(UART_LCR);
    // Loopback test: OUT2|RTS in loop mode must read back as DCD|CTS.
    wr(UART_MCR, MCR_LOOP | 0x0a);
    const status1 = rd(UART_MSR) & 0xf0;
    wr(UART_MCR, saveMcr);
    expect(status1).toBe(0x90);

    // EFR probe, then FIFO enable: IIR bits 7:6 identify the part.
    wr(UART_LCR, 0xbf);
    wr(UART_IIR_FCR, 0); // EFR on a 16650, FCR here
    wr(UART_LCR, 0);
    wr(UART_IIR_FCR, FCR_ENABLE_FIFO);
    expect(rd(UART_IIR_FCR) >> 6).toBe(3);

    // autoconfig_16550a: EFR must not read 0 under LCR 0xBF or DLAB, else it is a 16650/16850.
    wr(UART_LCR, 0xbf);
    expect(rd(UART_IIR_FCR)).not.toBe(0);
    wr(UART_LCR, LCR_DLAB);
    expect(rd(UART_IIR_FCR)).not.toBe(0);
    // National Semiconductor check: EXCR1 (offset 2 in bank 2) must not track MCR's LOOP bit.
    wr(UART_LCR, 0);
    const mcr = rd(UART_MCR);
    wr(UART_LCR, 0xe0);
    let excr1 = rd(UART_IIR_FCR);
    expect((excr1 ^ mcr) & MCR_LOOP).toBe(0);
    wr(UART_LCR, 0);
    wr(UART_MCR, mcr ^ MCR_LOOP);
    wr(UART_LCR, 0xe0);
    excr1 = rd(UART_IIR_FCR);
    wr(UART_LCR, 0);
    wr(UART_MCR, mcr);
    // Linux declares an NS16550 when EXCR1 now differs from the original MCR (it followed the toggle).
    expect((excr1 ^ mcr) & MCR_LOOP).toBe(0);
    // TI16750 check: the 64-byte bit (0x20) must never appear.
    wr(UART_IIR_FCR, FCR_ENABLE_FIFO | 0x20);
    const s1 = rd(UART_IIR_FCR) & 0xe0;
    wr(UART_IIR_FCR, FCR_ENABLE_FIFO);
    wr(UART_LCR, LCR_DLAB);
    wr(UART_IIR_FCR, FCR_ENABLE_FIFO | 0x20);
    const s2 = rd(UART_IIR_FCR) & 0xe0;
    wr(UART_IIR_FCR, FCR_ENABLE_FIFO);
    wr(UART_LCR, 0);
    expect(s1).toBe(0xc0);
    expect(s2).not.toBe(0xe0);
    // Xscale UUE bit (IER bit 6) must not stick.
    const ier = rd(UART_IER);
    wr(UART_IER, ier | 0x40);
    expect(rd(UART_IER) & 0x40).toBe(0);
    wr(UART_IER, ier);

    // Back to normal, as autoconfig() leaves it.
    wr(UART_LCR, saveLcr);
    wr(UART_MCR, saveMcr);
    wr(UART_IIR_FCR, FCR_ENABLE_FIFO | FCR_CLEAR_RCVR | 0x04);
    wr(UART_IIR_FCR, 0);
    rd(UART_RBR_THR);
    wr(UART_IER, 0);
    expect(rd(UART_LSR)).not.toBe(0xff);
    expect(out).toEqual([]); // the probe never leaked bytes to the host
  });

  it('autoconfig_irq sees the interrupt fire', () => {
    const { rd, wr, irq, out, uart } = setup();
    wr(UART_MCR, MCR_OUT1 | MCR_OUT2);
    wr(UART_MCR, 0);
    wr(UART_MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
    const before = irq.count;
    wr(UART_IER, 0x0f);
    rd(UART_LSR); rd(UART_RBR_THR); rd(UART_IIR_FCR); rd(UART_MSR);
    wr(UART_RBR_THR, 0xff);
    expect(irq.count).toBeGreaterThan(before);
    uart.flush();
    expect(out).toEqual([0xff]);
  });

  it('re-asserts THRE like a real 16550 (serial8250_do_startup UART_BUG_THRE test)', () => {
    const { rd, wr } = setup();
    wr(UART_IIR_FCR, FCR_ENABLE_FIFO);
    expect(rd(UART_LSR) & LSR_THRE).toBeTruthy();
    wr(UART_IER, IER_THRI);
    const iir1 = rd(UART_IIR_FCR);
    wr(UART_IER, 0);
    wr(UART_IER, IER_THRI);
    const iir = rd(UART_IIR_FCR);
    wr(UART_IER, 0);
    expect(iir1 & 0x0f).toBe(IIR_THRI);
    expect(iir & IIR_NO_INT).toBe(0); // else Linux would flag UART_BUG_THRE
    expect(iir & 0x0f).toBe(IIR_THRI);
  });
});

describe('transmit and THR-empty interrupt', () => {
  it('batches output to the sink and re-arms THRE after each byte', async () => {
    const { rd, wr, out, irq } = setup();
    wr(UART_IER, IER_THRI);
    expect(irq.count).toBe(1);
    expect(rd(UART_IIR_FCR)).toBe(IIR_THRI);
    expect(rd(UART_IIR_FCR)).toBe(IIR_NO_INT); // reading IIR acknowledged it
    for (const c of 'hi\n') wr(UART_RBR_THR, c.charCodeAt(0));
    expect(irq.count).toBe(2); // one new edge; the later writes found it still pending
    expect(rd(UART_IIR_FCR)).toBe(IIR_THRI);
    await Promise.resolve();
    expect(Buffer.from(out).toString()).toBe('hi\n');
  });

  it('divisor latch hides THR/IER while DLAB is set', () => {
    const { rd, wr, out, uart } = setup();
    wr(UART_LCR, LCR_DLAB | 0x03);
    wr(UART_RBR_THR, 0x0c);
    wr(UART_IER, 0x00);
    expect(rd(UART_RBR_THR)).toBe(0x0c);
    expect(rd(UART_IER)).toBe(0);
    wr(UART_LCR, 0x03);
    expect(rd(UART_IER)).toBe(0);
    uart.flush();
    expect(out).toEqual([]);
    expect(uart.state().dll).toBe(0x0c);
  });
});

describe('receive', () => {
  it('accepts input up to the FIFO size and signals space when the guest drains', async () => {
    const { rd, wr, irq, uart, spaces } = setup();
    wr(UART_IIR_FCR, FCR_ENABLE_FIFO);
    wr(UART_IER, IER_RDI);
    const input = new Uint8Array(20).map((_, i) => 0x41 + i);
    expect(uart.enqueueInput(input)).toBe(RX_FIFO_SIZE);
    expect(irq.count).toBe(1);
    expect(rd(UART_LSR) & LSR_DR).toBeTruthy();
    expect(rd(UART_IIR_FCR)).toBe(IIR_FIFO_ENABLED | IIR_RDI);
    expect(rd(UART_RBR_THR)).toBe(0x41);
    expect(spaces()).toBe(0);
    await Promise.resolve();
    expect(spaces()).toBe(1);
    const rest: number[] = [];
    while (rd(UART_LSR) & LSR_DR) rest.push(rd(UART_RBR_THR));
    expect(rest.length).toBe(RX_FIFO_SIZE - 1);
    expect(rd(UART_IIR_FCR)).toBe(IIR_FIFO_ENABLED | IIR_NO_INT);
    expect(uart.enqueueInput(input.subarray(16))).toBe(4);
  });

  it('holds one byte with the FIFO disabled and refuses input in loopback', () => {
    const { wr, uart } = setup();
    expect(uart.enqueueInput(new Uint8Array([1, 2]))).toBe(1);
    wr(UART_RBR_THR, 0); // not loopback: goes out
    wr(UART_MCR, MCR_LOOP);
    uart.readRegister(UART_RBR_THR);
    expect(uart.enqueueInput(new Uint8Array([3]))).toBe(0);
  });

  it('FCR clear-receiver empties the FIFO', () => {
    const { rd, wr, uart } = setup();
    wr(UART_IIR_FCR, FCR_ENABLE_FIFO);
    uart.enqueueInput(new Uint8Array([1, 2, 3]));
    wr(UART_IIR_FCR, FCR_ENABLE_FIFO | FCR_CLEAR_RCVR);
    expect(rd(UART_LSR) & LSR_DR).toBe(0);
  });
});

describe('loopback, modem status and priorities', () => {
  it('maps MCR to MSR in loopback with delta bits and a modem-status interrupt', () => {
    const { rd, wr, irq } = setup();
    wr(UART_IER, IER_MSI);
    wr(UART_MCR, MCR_LOOP);
    rd(UART_MSR); // clear deltas from leaving the connected state
    const base = irq.count;
    wr(UART_MCR, MCR_LOOP | MCR_RTS | MCR_OUT1 | MCR_OUT2);
    expect(irq.count).toBe(base + 1);
    expect(rd(UART_IIR_FCR)).toBe(IIR_MSI);
    const msr = rd(UART_MSR);
    expect(msr & 0xf0).toBe(MSR_CTS | MSR_RI | MSR_DCD);
    expect(msr & (MSR_DCTS | MSR_DDCD)).toBe(MSR_DCTS | MSR_DDCD);
    expect(rd(UART_MSR) & 0x0f).toBe(0); // cleared by the read
    expect(rd(UART_IIR_FCR)).toBe(IIR_NO_INT);
    wr(UART_MCR, MCR_LOOP | MCR_DTR);
    expect(rd(UART_MSR)).toBe(MSR_DSR | 0x02 | MSR_DCTS | MSR_DDCD | MSR_TERI);
  });

  it('echoes THR into the receiver, overruns, and orders causes line > rx > thr > modem', () => {
    const { rd, wr, out, uart } = setup();
    wr(UART_MCR, MCR_LOOP);
    wr(UART_RBR_THR, 0x61);
    wr(UART_RBR_THR, 0x62); // one-byte holding register: overrun
    wr(UART_IER, IER_RDI | IER_THRI | IER_RLSI | IER_MSI);
    wr(UART_MCR, MCR_LOOP | MCR_RTS); // a modem-status change as well
    expect(rd(UART_IIR_FCR)).toBe(IIR_RLSI);
    expect(rd(UART_LSR) & (LSR_OE | LSR_DR)).toBe(LSR_OE | LSR_DR);
    expect(rd(UART_LSR) & LSR_OE).toBe(0);
    expect(rd(UART_IIR_FCR)).toBe(IIR_RDI);
    expect(rd(UART_RBR_THR)).toBe(0x61);
    expect(rd(UART_IIR_FCR)).toBe(IIR_THRI);
    expect(rd(UART_IIR_FCR)).toBe(IIR_MSI);
    rd(UART_MSR);
    expect(rd(UART_IIR_FCR)).toBe(IIR_NO_INT);
    uart.flush();
    expect(out).toEqual([]);
  });
});

describe('serial state', () => {
  it('round-trips and re-raises a pending interrupt', () => {
    const { uart, wr } = setup();
    wr(UART_IIR_FCR, FCR_ENABLE_FIFO);
    wr(UART_IER, IER_RDI);
    wr(UART_SCR, 7);
    uart.enqueueInput(new Uint8Array([9, 8]));
    const s = uart.state();
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
    const irq = { count: 0, trigger() { this.count++; } };
    const back = Serial16550.fromState({ interrupt: irq, output: () => {} }, s);
    expect(back.state()).toEqual(s);
    expect(irq.count).toBe(1);
    expect(back.readRegister(UART_RBR_THR)).toBe(9);
  });

  it('rejects impossible values with DeviceStateError', () => {
    const { uart } = setup();
    const s = uart.state();
    const bad: Array<Partial<SerialState>> = [
      { ier: 0x10 }, { mcr: 0x20 }, { lcr: 256 }, { rx: [1, 2] }, { rx: [300] }, { fcr: 0x02 }, { msrDelta: 0x10 }, { dll: -1 },
    ];
    for (const b of bad) {
      expect(() => Serial16550.fromState({ interrupt: { trigger() {} }, output: () => {} }, { ...s, ...b }), JSON.stringify(b)).toThrow(DeviceStateError);
    }
  });
});
