/**
 * The host ends of the guest's two console ports, the serial port (ttyS0) and the virtio console
 * (hvc0), each configured as Cloud Hypervisor configures them: the terminal (stdout, and stdin
 * when the VMM owns it), a file, a Unix socket at a path, tsvmm's API console (`socket` without a
 * path: `tsvmm-remote console`), nowhere (null) or no device (off).
 */
import { createWriteStream, openSync, type WriteStream } from 'node:fs';
import { log } from '../util/log.js';
import type { PortConfig, VmConfig } from './config.js';
import type { ConsoleAttachment, ConsolePortName } from './controller.js';
import { ConflictError, InputFileError, InvalidStateError } from './errors.js';
import { PortSocket } from './port-socket.js';
import { PortPty } from './port-pty.js';
import { CONSOLE_SOCKET, SERIAL_SOCKET, type SocketRole } from './api/socket-file.js';

/** How each port's config is found, and what users call it. */
const PORTS: { readonly [name in ConsolePortName]: { flag: string; device: string; role: SocketRole } } = {
  serial: { flag: '--serial', device: 'serial port', role: SERIAL_SOCKET },
  console: { flag: '--console', device: 'virtio console', role: CONSOLE_SOCKET },
};

export function portConfig(config: VmConfig, name: ConsolePortName): PortConfig {
  return name === 'serial' ? config.serial : config.console;
}

export class ConsolePort {
  private file: WriteStream | undefined;
  private filePath: string | undefined;
  private socket: PortSocket | undefined;
  private pty: PortPty | undefined;
  private apiListener: ((bytes: Uint8Array) => void) | undefined;

  /** `input` takes what the host side sends the guest on this port. */
  constructor(readonly name: ConsolePortName, private readonly input: (bytes: Uint8Array) => void) {}

  /**
   * Where the guest's output goes for `config`. A file is opened now, so a bad path fails the
   * boot instead of losing the output later; a reboot of the same VM keeps appending to it.
   */
  output(config: VmConfig): (bytes: Uint8Array) => void {
    const port = portConfig(config, this.name);
    switch (port.mode) {
      case 'Tty':
        return (b) => { process.stdout.write(b); };
      case 'Pty':
        return (b) => { this.pty?.output(b); };
      case 'File': {
        const path = port.file!;
        if (this.file === undefined || this.filePath !== path) {
          this.file?.end();
          let fd: number;
          try {
            fd = openSync(path, 'w');
          } catch (e) {
            throw new InputFileError(`cannot open ${PORTS[this.name].device} file ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (e as Error).message}`);
          }
          const stream = createWriteStream('', { fd });
          stream.on('error', (e) => log.error(`${PORTS[this.name].device} file ${path}: ${e.message}`));
          this.file = stream;
          this.filePath = path;
        }
        const file = this.file;
        return (b) => { file.write(b); };
      }
      case 'Socket':
        // Both ends may be in use: a client of the socket and a console attached through the API.
        return (b) => { this.apiListener?.(b); this.socket?.output(b); };
      case 'Null':
      case 'Off':
        return () => {};
    }
  }

  /**
   * Listens on the port's `socket=PATH` (kept across reboots and reverts of the same VM; replaced
   * when a restore brings another path), or opens its pseudo-terminal (kept likewise). Before a
   * boot, so a bad path fails it.
   */
  async open(config: VmConfig): Promise<void> {
    const port = portConfig(config, this.name);
    if (port.mode === 'Pty') this.pty ??= PortPty.open(PORTS[this.name].device, this.input);
    else {
      this.pty?.close();
      this.pty = undefined;
    }
    const want = port.mode === 'Socket' ? port.socket : undefined;
    if (this.socket?.path === want) return;
    await this.socket?.close();
    this.socket = undefined;
    if (want !== undefined) this.socket = await PortSocket.listen(want, PORTS[this.name].role, this.input);
  }

  /** The port's config as vm.info reports it: in Pty mode, `file` is the terminal's path. */
  reported(config: VmConfig): PortConfig {
    const port = portConfig(config, this.name);
    return port.mode === 'Pty' && this.pty !== undefined ? { mode: 'Pty', file: this.pty.path } : port;
  }

  /** Whether `tsvmm-remote console` can attach to this port of `config` (Socket mode). */
  attachable(config: VmConfig): boolean {
    return portConfig(config, this.name).mode === 'Socket';
  }

  /** Attaches an API console client (vm.console) to a port in Socket mode. */
  attach(config: VmConfig): ConsoleAttachment {
    const { flag, device } = PORTS[this.name];
    if (!this.attachable(config)) throw new InvalidStateError(`the ${device} is not in socket mode: start the VM with ${flag} socket to attach a console to it`);
    if (this.apiListener !== undefined) throw new ConflictError(`a console is already attached to the ${device}; detach it first`);
    let listener: ((b: Uint8Array) => void) | undefined;
    this.apiListener = (b) => listener?.(b);
    return {
      onOutput: (l) => { listener = l; },
      input: (bytes) => { this.input(bytes); },
      detach: () => { this.apiListener = undefined; listener = undefined; },
    };
  }

  async close(): Promise<void> {
    this.file?.end();
    this.pty?.close();
    this.pty = undefined;
    await this.socket?.close();
  }
}
