import type { PioDevice, Snapshottable } from './bus.js';
import { DeviceStateError } from './errors.js';

/**
 * A minimal i8042 keyboard controller at ports 0x60 (data, offset 0) and 0x64 (status/command,
 * offset 4); insert it at base 0x60 with size 5. No keyboard or mouse is attached: it exists so
 * that a guest's probe reads sane values and so that the classic reset (command 0xFE, or pulsing
 * output-port bit 0 through command 0xD1) reaches `onReset`.
 */
export const I8042_BASE = 0x60;
export const I8042_SIZE = 5;
export const I8042_DATA_OFFSET = 0;
export const I8042_COMMAND_OFFSET = 4;

export const I8042_STATUS_OBF = 0x01; // output buffer full: a byte waits at port 0x60
export const I8042_STATUS_SYS = 0x04; // system flag, set once the self test passed

export const I8042_CMD_READ_CTR = 0x20;
export const I8042_CMD_WRITE_CTR = 0x60;
export const I8042_CMD_DISABLE_AUX = 0xa7;
export const I8042_CMD_ENABLE_AUX = 0xa8;
export const I8042_CMD_AUX_TEST = 0xa9;
export const I8042_CMD_SELF_TEST = 0xaa;
export const I8042_CMD_KBD_TEST = 0xab;
export const I8042_CMD_DISABLE_KBD = 0xad;
export const I8042_CMD_ENABLE_KBD = 0xae;
export const I8042_CMD_WRITE_OUTPUT_PORT = 0xd1;
export const I8042_CMD_RESET = 0xfe;

const SELF_TEST_OK = 0x55;
const INTERFACE_TEST_OK = 0x00;
/** Controller configuration byte after firmware: translation on, keyboard/aux clocks enabled. */
const DEFAULT_CTR = 0x44;

export interface I8042State {
  ctr: number;
  output: number | null;
  pendingCommand: number | null;
}

export class I8042 implements PioDevice, Snapshottable<I8042State> {
  private ctr = DEFAULT_CTR;
  private output: number | null = null;
  /** A command whose parameter byte is expected at the data port. */
  private pendingCommand: number | null = null;

  constructor(private readonly onReset: () => void) {}

  pioRead(offset: number, data: Uint8Array): void {
    data.fill(0xff);
    if (data.length === 0) return;
    if (offset === I8042_DATA_OFFSET) {
      data[0] = this.output ?? 0;
      this.output = null;
    } else if (offset === I8042_COMMAND_OFFSET) {
      data[0] = I8042_STATUS_SYS | (this.output === null ? 0 : I8042_STATUS_OBF);
    }
  }

  pioWrite(offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    const v = data[0]!;
    if (offset === I8042_COMMAND_OFFSET) this.command(v);
    else if (offset === I8042_DATA_OFFSET) this.dataWrite(v);
  }

  state(): I8042State {
    return { ctr: this.ctr, output: this.output, pendingCommand: this.pendingCommand };
  }

  static fromState(onReset: () => void, s: I8042State): I8042 {
    const isByte = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xff;
    if (!isByte(s.ctr)) throw new DeviceStateError('i8042', `ctr ${String(s.ctr)} is not a byte`);
    if (s.output !== null && !isByte(s.output)) throw new DeviceStateError('i8042', `output ${String(s.output)} is not a byte or null`);
    if (s.pendingCommand !== null && s.pendingCommand !== I8042_CMD_WRITE_CTR && s.pendingCommand !== I8042_CMD_WRITE_OUTPUT_PORT) {
      throw new DeviceStateError('i8042', `pendingCommand ${String(s.pendingCommand)} takes no parameter`);
    }
    const dev = new I8042(onReset);
    dev.ctr = s.ctr;
    dev.output = s.output;
    dev.pendingCommand = s.pendingCommand;
    return dev;
  }

  private command(cmd: number): void {
    this.pendingCommand = null;
    switch (cmd) {
      case I8042_CMD_READ_CTR: this.output = this.ctr; break;
      case I8042_CMD_WRITE_CTR:
      case I8042_CMD_WRITE_OUTPUT_PORT: this.pendingCommand = cmd; break;
      case I8042_CMD_SELF_TEST: this.output = SELF_TEST_OK; break;
      case I8042_CMD_KBD_TEST:
      case I8042_CMD_AUX_TEST: this.output = INTERFACE_TEST_OK; break;
      case I8042_CMD_DISABLE_KBD: this.ctr |= 0x10; break;
      case I8042_CMD_ENABLE_KBD: this.ctr &= ~0x10; break;
      case I8042_CMD_DISABLE_AUX: this.ctr |= 0x20; break;
      case I8042_CMD_ENABLE_AUX: this.ctr &= ~0x20; break;
      case I8042_CMD_RESET: this.onReset(); break;
      default: break; // other commands (pulse lines, read input port, ...) have no effect here
    }
  }

  private dataWrite(v: number): void {
    const cmd = this.pendingCommand;
    this.pendingCommand = null;
    if (cmd === I8042_CMD_WRITE_CTR) this.ctr = v;
    // Output port bit 0 is the CPU reset line, active low.
    else if (cmd === I8042_CMD_WRITE_OUTPUT_PORT && (v & 1) === 0) this.onReset();
    // Bytes for the (absent) keyboard are dropped: no device answers.
  }
}
