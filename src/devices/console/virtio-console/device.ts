/**
 * virtio-console (virtio 1.x §5.3), one port, no multiport: the guest's hvc0. Port 0's receiveq
 * (queue 0) carries host input into buffers the driver posts; its transmitq (queue 1) carries the
 * guest's output. VIRTIO_CONSOLE_F_SIZE reports the host terminal's size (the driver resizes hvc0
 * on a configuration-change interrupt), VIRTIO_CONSOLE_F_EMERG_WRITE lets a driver write a byte
 * through the configuration space before its queues work.
 *
 * Output is handed to the sink as each transmit chain is read, so nothing is buffered in the
 * device: a snapshot taken while the device is paused holds every byte the guest has not yet
 * sent in the guest's own ring, and the restored VM sends it once, when it resumes. Input the guest has no buffer
 * for waits in the device (bounded) and is kept in its state.
 */
import type { Virtqueue } from '../../virtio/queue.js';
import { VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, bit, readConfigSpace, type VirtioActivation, type VirtioDevice } from '../../virtio/device.js';
import { MAX_PENDING_INPUT, parseVirtioConsoleState, type VirtioConsoleState } from './persist.js';

export const VIRTIO_ID_CONSOLE = 3;
export const VIRTIO_CONSOLE_F_SIZE = 0n;
export const VIRTIO_CONSOLE_F_EMERG_WRITE = 2n;

export const RECEIVEQ = 0;
export const TRANSMITQ = 1;
const QUEUE_SIZE = 256;

/** Configuration space (§5.3.4): cols u16, rows u16, max_nr_ports u32, emerg_wr u32. */
const CONFIG_COLS = 0;
const CONFIG_ROWS = 2;
const CONFIG_MAX_NR_PORTS = 4;
const CONFIG_EMERG_WR = 8;
const CONFIG_SIZE = 12;

export interface VirtioConsoleOptions {
  /** Bytes the guest wrote to hvc0 (the buffer is only valid during the call). */
  output(bytes: Uint8Array): void;
  /** A driver error worth a log line (the transport also marks the device NEEDS_RESET). */
  onError?(message: string): void;
  /** Input the device had to drop (the guest posts no receive buffers and the backlog is full). */
  onInputDropped?(bytes: number): void;
}

export type VirtioConsoleCounters = {
  tx_bytes: number;
  rx_bytes: number;
  rx_dropped_bytes: number;
};

export class VirtioConsole implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_CONSOLE;
  readonly queueMaxSizes = [QUEUE_SIZE, QUEUE_SIZE];
  // No EVENT_IDX: a console moves few bytes, and without it the driver kicks for every receive
  // buffer it posts, which is what waiting input needs.
  readonly deviceFeatures = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_CONSOLE_F_SIZE) | bit(VIRTIO_CONSOLE_F_EMERG_WRITE);
  private activation: VirtioActivation | null = null;
  private paused = false;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private cols = 0;
  private rows = 0;
  private readonly stats: VirtioConsoleCounters = { tx_bytes: 0, rx_bytes: 0, rx_dropped_bytes: 0 };

  constructor(private readonly options: VirtioConsoleOptions) {}

  /** The host terminal's size as the driver reads it; tell the driver through the transport's configChanged(). */
  resize(cols: number, rows: number): boolean {
    const c = clampU16(cols);
    const r = clampU16(rows);
    if (c === this.cols && r === this.rows) return false;
    this.cols = c;
    this.rows = r;
    return true;
  }

  /** Host input for the guest: delivered into its receive buffers now, or when it posts some. */
  input(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const room = MAX_PENDING_INPUT - this.pendingBytes;
    if (room <= 0) {
      this.dropped(bytes.length);
      return;
    }
    const take = bytes.length <= room ? bytes : bytes.subarray(0, room);
    // Copied: the caller may reuse its buffer.
    this.pending.push(Uint8Array.from(take));
    this.pendingBytes += take.length;
    if (take.length < bytes.length) this.dropped(bytes.length - take.length);
    this.fillReceiveBuffers();
  }

  counters(): VirtioConsoleCounters {
    return { ...this.stats };
  }

  /** Stops using the queues (VM pause and snapshot): the rings stay as the guest left them. */
  pause(): void {
    this.paused = true;
  }

  /** Uses the queues again, sending and receiving whatever waited meanwhile. */
  unpause(): void {
    this.paused = false;
    this.processAll();
  }

  // ---- VirtioDevice ----------------------------------------------------------------------

  readConfig(offset: number, data: Uint8Array): void {
    const config = new Uint8Array(CONFIG_SIZE);
    const view = new DataView(config.buffer);
    view.setUint16(CONFIG_COLS, this.cols, true);
    view.setUint16(CONFIG_ROWS, this.rows, true);
    view.setUint32(CONFIG_MAX_NR_PORTS, 1, true);
    readConfigSpace(config, offset, data);
  }

  writeConfig(offset: number, data: Uint8Array): void {
    // Only emerg_wr is writable: its low byte is one character of output (§5.3.6.2).
    if (offset === CONFIG_EMERG_WR && data.length >= 1 && !this.paused) this.emit(data.subarray(0, 1));
  }

  activate(activation: VirtioActivation): void {
    this.activation = activation;
    // Output the guest queued before a snapshot (or a pause) goes out now.
    this.processAll();
  }

  queueNotify(index: number): void {
    if (index === TRANSMITQ) this.transmit();
    else if (index === RECEIVEQ) this.fillReceiveBuffers();
  }

  reset(): void {
    this.activation = null;
  }

  state(): VirtioConsoleState {
    return { cols: this.cols, rows: this.rows, pendingInput: Buffer.concat(this.pending).toString('base64') };
  }

  /**
   * The device as saved, paused: a restored VM resumes later, and the output its guest had queued
   * goes out then (unpause), when the new host end may have a client (an API console attaches to
   * the paused VM), rather than to nobody while the VM is being built.
   */
  static fromState(options: VirtioConsoleOptions, s: unknown): VirtioConsole {
    const state = parseVirtioConsoleState(s);
    const dev = new VirtioConsole(options);
    dev.paused = true;
    dev.cols = state.cols;
    dev.rows = state.rows;
    const pending = Buffer.from(state.pendingInput, 'base64');
    if (pending.length > 0) {
      dev.pending.push(new Uint8Array(pending));
      dev.pendingBytes = pending.length;
    }
    return dev;
  }

  // ---- queues -------------------------------------------------------------------------------

  private processAll(): void {
    this.transmit();
    this.fillReceiveBuffers();
  }

  private queue(index: number): { act: VirtioActivation; q: Virtqueue } | null {
    const act = this.activation;
    if (act === null || this.paused) return null;
    const q = act.queues[index];
    return q === undefined || !q.ready ? null : { act, q };
  }

  /** Sends every transmit chain's device-readable bytes to the sink and returns the chains. */
  private transmit(): void {
    const target = this.queue(TRANSMITQ);
    if (target === null) return;
    const { act, q } = target;
    try {
      let used = false;
      for (let chain = q.popChain(); chain !== null; chain = q.popChain()) {
        // A device-writable buffer has no place on a transmit queue; it is skipped, not written.
        for (const d of chain) if (!d.writable && d.len > 0) this.emit(act.memory.slice(d.addr, d.len));
        q.addUsed(chain.head, 0);
        used = true;
      }
      if (used) act.signalUsed(TRANSMITQ);
    } catch (e) {
      this.deviceError(act, e);
    }
  }

  /** Moves waiting input into the receive buffers the driver posted, as much as they hold. */
  private fillReceiveBuffers(): void {
    if (this.pendingBytes === 0) return;
    const target = this.queue(RECEIVEQ);
    if (target === null) return;
    const { act, q } = target;
    try {
      let used = false;
      while (this.pendingBytes > 0 && q.pending() > 0) {
        const chain = q.popChain()!;
        let written = 0;
        for (const d of chain) {
          if (!d.writable) continue; // the device only writes into device-writable buffers
          let room = d.len;
          let at = d.addr;
          while (room > 0 && this.pending.length > 0) {
            const head = this.pending[0]!;
            const n = Math.min(room, head.length);
            act.memory.write(at, head.subarray(0, n));
            at += n;
            room -= n;
            written += n;
            if (n === head.length) this.pending.shift();
            else this.pending[0] = head.subarray(n);
          }
        }
        this.pendingBytes -= written;
        this.stats.rx_bytes += written;
        q.addUsed(chain.head, written);
        used = true;
      }
      if (used) act.signalUsed(RECEIVEQ);
    } catch (e) {
      this.deviceError(act, e);
    }
  }

  private emit(bytes: Uint8Array): void {
    this.stats.tx_bytes += bytes.length;
    this.options.output(bytes);
  }

  private dropped(n: number): void {
    this.stats.rx_dropped_bytes += n;
    this.options.onInputDropped?.(n);
  }

  private deviceError(act: VirtioActivation, e: unknown): void {
    const msg = e instanceof Error ? e.message : String(e);
    this.options.onError?.(`virtio-console: ${msg}`);
    this.activation = null;
    act.deviceError(msg);
  }
}

function clampU16(n: number): number {
  return Number.isFinite(n) ? Math.max(0, Math.min(0xffff, Math.trunc(n))) : 0;
}
