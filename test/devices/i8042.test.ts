import { describe, expect, it } from 'vitest';
import {
  I8042, I8042_COMMAND_OFFSET, I8042_DATA_OFFSET, I8042_STATUS_OBF, I8042_STATUS_SYS,
  I8042_CMD_READ_CTR, I8042_CMD_WRITE_CTR, I8042_CMD_SELF_TEST, I8042_CMD_RESET, I8042_CMD_WRITE_OUTPUT_PORT,
} from '../../src/devices/i8042.js';
import { DebugExit } from '../../src/devices/debug-exit.js';
import { DeviceStateError } from '../../src/devices/errors.js';

const rd = (d: I8042, off: number) => { const b = new Uint8Array(1); d.pioRead(off, b); return b[0]!; };
const wr = (d: I8042, off: number, v: number) => d.pioWrite(off, new Uint8Array([v]));

describe('i8042', () => {
  it('reports an idle, self-tested controller', () => {
    const d = new I8042(() => {});
    expect(rd(d, I8042_COMMAND_OFFSET)).toBe(I8042_STATUS_SYS);
  });

  it('answers self test and controller-byte commands through the output buffer', () => {
    const d = new I8042(() => {});
    wr(d, I8042_COMMAND_OFFSET, I8042_CMD_SELF_TEST);
    expect(rd(d, I8042_COMMAND_OFFSET) & I8042_STATUS_OBF).toBeTruthy();
    expect(rd(d, I8042_DATA_OFFSET)).toBe(0x55);
    expect(rd(d, I8042_COMMAND_OFFSET) & I8042_STATUS_OBF).toBe(0);
    wr(d, I8042_COMMAND_OFFSET, I8042_CMD_WRITE_CTR);
    wr(d, I8042_DATA_OFFSET, 0x47);
    wr(d, I8042_COMMAND_OFFSET, I8042_CMD_READ_CTR);
    expect(rd(d, I8042_DATA_OFFSET)).toBe(0x47);
  });

  it('calls onReset for command 0xFE and for output-port bit 0 low, not otherwise', () => {
    let resets = 0;
    const d = new I8042(() => { resets++; });
    wr(d, I8042_DATA_OFFSET, 0xfe); // 0xFE at the data port is a keyboard byte, not a reset
    wr(d, I8042_COMMAND_OFFSET, 0xff);
    expect(resets).toBe(0);
    wr(d, I8042_COMMAND_OFFSET, I8042_CMD_RESET);
    expect(resets).toBe(1);
    wr(d, I8042_COMMAND_OFFSET, I8042_CMD_WRITE_OUTPUT_PORT);
    wr(d, I8042_DATA_OFFSET, 0x01);
    expect(resets).toBe(1);
    wr(d, I8042_COMMAND_OFFSET, I8042_CMD_WRITE_OUTPUT_PORT);
    wr(d, I8042_DATA_OFFSET, 0x00);
    expect(resets).toBe(2);
  });

  it('state round-trips and is validated', () => {
    const d = new I8042(() => {});
    wr(d, I8042_COMMAND_OFFSET, I8042_CMD_WRITE_CTR);
    const s = d.state();
    expect(I8042.fromState(() => {}, s).state()).toEqual(s);
    expect(() => I8042.fromState(() => {}, { ...s, ctr: 256 })).toThrow(DeviceStateError);
    expect(() => I8042.fromState(() => {}, { ...s, pendingCommand: 0xaa })).toThrow(DeviceStateError);
  });
});

describe('debug-exit', () => {
  it('powers off with the low byte of the value written, at any width', () => {
    const got: number[] = [];
    const d = new DebugExit((s) => got.push(s));
    d.pioWrite(0, new Uint8Array([0x31]));
    d.pioWrite(0, new Uint8Array([0x02, 0x01, 0, 0])); // 0x102 as a 32-bit out
    d.pioWrite(0, new Uint8Array([]));
    expect(got).toEqual([0x31, 0x02]);
    const b = new Uint8Array(4);
    d.pioRead(0, b);
    expect([...b]).toEqual([0xff, 0xff, 0xff, 0xff]);
  });
});
