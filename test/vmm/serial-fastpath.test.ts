import { describe, expect, test } from 'vitest';
import { Serial16550, UART_IER, UART_LCR, UART_LSR, UART_MCR, UART_RBR_THR } from '../../src/devices/serial.js';
import { SerialFastPath, SerialFastPathClient } from '../../src/vmm/serial-fastpath.js';

function setup() {
  const out: number[] = [];
  let irqs = 0;
  const serial = new Serial16550({ interrupt: { trigger: () => { irqs++; } }, output: (b) => out.push(...b) });
  const main = new SerialFastPath(serial, 0x3f8);
  const worker = new SerialFastPathClient(main.init());
  const write = (off: number, v: number): void => main.pioWrite(off, Uint8Array.of(v));
  const read = (off: number): number => { const d = new Uint8Array(1); main.pioRead(off, d); return d[0]!; };
  return { serial, main, worker, out, write, read, irqs: () => irqs };
}

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('serial fast path', () => {
  test('in the plain polled state the worker answers LSR and queues THR bytes', () => {
    const s = setup();
    expect(s.worker.lsr()).toBe(0x60); // THRE | TEMT
    expect(s.worker.write(bytes('ab'))).toBe(true);
    s.main.drain();
    s.serial.flush();
    expect(String.fromCharCode(...s.out)).toBe('ab');
  });

  test('queued bytes reach the UART before any trapped access (order is kept)', () => {
    const s = setup();
    expect(s.worker.write(bytes('12'))).toBe(true);
    s.write(UART_RBR_THR, '3'.charCodeAt(0)); // trapped write: must come after the queued bytes
    s.serial.flush();
    expect(String.fromCharCode(...s.out)).toBe('123');
  });

  test('states where the accesses have side effects take the slow path', () => {
    const s = setup();
    s.write(UART_LCR, 0x80); // DLAB: port 0 is the divisor latch, not THR
    expect(s.worker.lsr()).toBe(-1);
    expect(s.worker.write(bytes('x'))).toBe(false);
    s.write(UART_LCR, 0x03);
    expect(s.worker.lsr()).toBe(0x60);
    s.write(UART_IER, 0x02); // THR-empty interrupts: each write must raise one
    expect(s.worker.write(bytes('x'))).toBe(false);
    s.write(UART_IER, 0x00);
    s.write(UART_MCR, 0x10); // loopback: THR feeds the receiver
    expect(s.worker.lsr()).toBe(-1);
    s.write(UART_MCR, 0x08);
    expect(s.worker.lsr()).toBe(0x60);
  });

  test('received data shows in the fast LSR and clears once read', () => {
    const s = setup();
    s.serial.enqueueInput(bytes('k'));
    s.main.publish();
    expect(s.worker.lsr()).toBe(0x61);
    expect(s.read(UART_RBR_THR)).toBe('k'.charCodeAt(0));
    expect(s.worker.lsr()).toBe(0x60);
    expect(s.read(UART_LSR)).toBe(0x60);
  });

  test('a full ring refuses the write instead of dropping bytes', () => {
    const s = setup();
    const chunk = new Uint8Array(1024).fill(0x41);
    let accepted = 0;
    while (s.worker.write(chunk)) accepted += chunk.length;
    expect(accepted).toBe(64 * 1024);
    s.main.drain();
    expect(s.worker.write(chunk)).toBe(true);
    s.main.close();
  });
});
