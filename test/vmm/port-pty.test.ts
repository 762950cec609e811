/** `--serial pty` / `--console pty` (src/vmm/port-pty.ts) on real pseudo-terminals, no VM. */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { PortPty } from '../../src/vmm/port-pty.js';
import { until } from '../support/timing.js';

let open: PortPty | undefined;
afterEach(() => {
  open?.close();
  open = undefined;
});


describe('PortPty', () => {
  it('is a raw terminal at /dev/pts/N: what a user types reaches the guest as typed, guest output reaches the user', async () => {
    const input: number[] = [];
    open = PortPty.open('serial port', (b) => input.push(...b));
    expect(open.path).toMatch(/^\/dev\/pts\/\d+$/);
    const user = openSync(open.path, 'r+');
    try {
      // Raw mode: no line buffering, no CR→NL, no echo, ^C is a byte like any other.
      writeSync(user, Buffer.from('ls\r\x03'));
      await until(() => input.length === 4);
      expect(Buffer.from(input).toString('latin1')).toBe('ls\r\x03');
      open.output(Buffer.from('guest says hi\n'));
      const buf = Buffer.alloc(64);
      const n = readSync(user, buf);
      // No NL→CRNL translation either.
      expect(buf.subarray(0, n).toString()).toBe('guest says hi\n');
    } finally {
      closeSync(user);
    }
  });

  it('drops output nobody reads once the terminal buffer is full, without blocking or throwing', () => {
    open = PortPty.open('virtio console', () => {});
    const chunk = Buffer.alloc(64 * 1024, 0x41);
    for (let i = 0; i < 64; i++) open.output(chunk); // 4 MiB into a terminal nobody has open
    expect((open as unknown as { dropping: boolean }).dropping).toBe(true);
  });

  it('each port gets a terminal of its own', () => {
    open = PortPty.open('serial port', () => {});
    const other = PortPty.open('virtio console', () => {});
    try {
      expect(other.path).not.toBe(open.path);
    } finally {
      other.close();
    }
  });
});
