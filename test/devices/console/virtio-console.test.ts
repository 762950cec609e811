import { describe, expect, it } from 'vitest';
import { anonymousGuestMemory, type GuestMemory } from '../../../src/memory/guest-memory.js';
import {
  RECEIVEQ, TRANSMITQ, VIRTIO_CONSOLE_F_EMERG_WRITE, VIRTIO_CONSOLE_F_SIZE, VIRTIO_ID_CONSOLE, VirtioConsole,
} from '../../../src/devices/console/virtio-console/device.js';
import { MAX_PENDING_INPUT } from '../../../src/devices/console/virtio-console/persist.js';
import { INTERRUPT_CONFIG_CHANGE, MMIO_CONFIG, MMIO_DEVICE_ID, MMIO_STATUS, VirtioMmioTransport } from '../../../src/devices/virtio/mmio.js';
import { STATUS_DEVICE_NEEDS_RESET, VIRTIO_F_VERSION_1, bit } from '../../../src/devices/virtio/device.js';
import { DeviceStateError } from '../../../src/devices/errors.js';
import { CountingLine, MockQueue, ackInterrupt, bringUp, mmioRead32, notify, readDeviceFeatures } from '../virtio/mock-driver.js';

const QSIZE = 16;
const FEATURES = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_CONSOLE_F_SIZE);
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (b: Uint8Array): string => new TextDecoder().decode(b);

/** A guest with a virtio console and a test driver: receiveq at 0x10000, transmitq at 0x20000. */
class Rig {
  readonly out: string[] = [];
  readonly irq = new CountingLine();
  readonly errors: string[] = [];
  readonly rx: MockQueue;
  readonly tx: MockQueue;
  t: VirtioMmioTransport;

  constructor(readonly mem: GuestMemory, public dev: VirtioConsole, up = true) {
    this.t = new VirtioMmioTransport({ device: dev, memory: mem, interrupt: this.irq, onDeviceError: (r) => this.errors.push(r) });
    this.rx = new MockQueue(mem, 0x10000, QSIZE);
    this.tx = new MockQueue(mem, 0x20000, QSIZE);
    if (up) bringUp(this.t, FEATURES, [this.rx, this.tx].map((q) => ({ desc: q.desc, avail: q.avail, used: q.used, size: QSIZE })));
  }

  static create(): Rig {
    const out: string[] = [];
    const dev = new VirtioConsole({ output: (b) => out.push(str(b)) });
    const rig = new Rig(anonymousGuestMemory([{ guestBase: 0, size: 0x100000 }]), dev);
    Object.assign(rig, { out });
    return rig;
  }

  /** The guest writes `s` to hvc0: one transmit chain of one buffer. */
  send(s: string, at = 0x40000): number {
    this.mem.write(at, text(s));
    const head = this.tx.addChain([{ addr: at, len: s.length, writable: false }]);
    notify(this.t, TRANSMITQ);
    return head;
  }

  /** The guest posts a receive buffer of `len` bytes at `at`. */
  post(at: number, len: number): number {
    const head = this.rx.addChain([{ addr: at, len, writable: true }]);
    notify(this.t, RECEIVEQ);
    return head;
  }
}

describe('virtio-console', () => {
  it('is device 3 with two queues and offers F_SIZE and F_EMERG_WRITE', () => {
    const rig = Rig.create();
    expect(mmioRead32(rig.t, MMIO_DEVICE_ID)).toBe(VIRTIO_ID_CONSOLE);
    expect(rig.dev.queueMaxSizes).toHaveLength(2);
    const f = readDeviceFeatures(rig.t);
    expect(f & bit(VIRTIO_CONSOLE_F_SIZE)).not.toBe(0n);
    expect(f & bit(VIRTIO_CONSOLE_F_EMERG_WRITE)).not.toBe(0n);
  });

  it('sends what the guest transmits, returns the buffer and interrupts', () => {
    const rig = Rig.create();
    const head = rig.send('hello hvc0\n');
    expect(rig.out.join('')).toBe('hello hvc0\n');
    expect(rig.tx.usedIdx()).toBe(1);
    expect(rig.tx.usedElem(0)).toEqual({ id: head, len: 0 });
    expect(rig.irq.count).toBe(1);
    expect(rig.dev.counters().tx_bytes).toBe(11);
  });

  it('sends every readable buffer of a chain in order and skips device-writable ones', () => {
    const rig = Rig.create();
    rig.mem.write(0x40000, text('ab'));
    rig.mem.write(0x41000, text('XX'));
    rig.mem.write(0x42000, text('cd'));
    rig.tx.addChain([{ addr: 0x40000, len: 2, writable: false }, { addr: 0x41000, len: 2, writable: true }, { addr: 0x42000, len: 2, writable: false }]);
    notify(rig.t, TRANSMITQ);
    expect(rig.out.join('')).toBe('abcd');
  });

  it('keeps input until the guest posts a buffer, then fills it and reports the length', () => {
    const rig = Rig.create();
    rig.dev.input(text('ls\n'));
    expect(rig.rx.usedIdx()).toBe(0);
    const head = rig.post(0x50000, 64);
    expect(rig.rx.usedIdx()).toBe(1);
    expect(rig.rx.usedElem(0)).toEqual({ id: head, len: 3 });
    expect(str(rig.mem.read(0x50000, 3))).toBe('ls\n');
    expect(rig.dev.counters().rx_bytes).toBe(3);
  });

  it('splits input larger than a buffer across buffers, losing and doubling nothing', () => {
    const rig = Rig.create();
    rig.post(0x50000, 4);
    rig.post(0x51000, 4);
    rig.dev.input(text('0123456789'));
    expect(rig.rx.usedElem(0).len).toBe(4);
    expect(rig.rx.usedElem(1).len).toBe(4);
    rig.post(0x52000, 4);
    expect(rig.rx.usedElem(2).len).toBe(2);
    expect(str(rig.mem.read(0x50000, 4)) + str(rig.mem.read(0x51000, 4)) + str(rig.mem.read(0x52000, 2))).toBe('0123456789');
    expect(rig.rx.usedIdx()).toBe(3);
  });

  it('bounds the input a guest does not read and counts what it drops', () => {
    const dropped: number[] = [];
    const dev = new VirtioConsole({ output: () => {}, onInputDropped: (n) => dropped.push(n) });
    dev.input(new Uint8Array(MAX_PENDING_INPUT - 10));
    dev.input(new Uint8Array(30));
    expect(dropped).toEqual([20]);
    expect(dev.counters().rx_dropped_bytes).toBe(20);
  });

  it('reports the terminal size in its configuration space and tells the driver when it changes', () => {
    const rig = Rig.create();
    expect(rig.dev.resize(132, 43)).toBe(true);
    rig.t.configChanged();
    expect(ackInterrupt(rig.t) & INTERRUPT_CONFIG_CHANGE).toBe(INTERRUPT_CONFIG_CHANGE);
    expect(mmioRead32(rig.t, MMIO_CONFIG)).toBe(132 | (43 << 16));
    expect(mmioRead32(rig.t, MMIO_CONFIG + 4)).toBe(1); // max_nr_ports
    expect(rig.dev.resize(132, 43)).toBe(false);
  });

  it('writes an emergency byte through the configuration space', () => {
    const rig = Rig.create();
    const b = new Uint8Array([0x21, 0, 0, 0]);
    rig.t.mmioWrite(MMIO_CONFIG + 8, b);
    expect(rig.out.join('')).toBe('!');
  });

  it('leaves the rings alone while paused and catches up on unpause', () => {
    const rig = Rig.create();
    rig.dev.pause();
    rig.send('during pause');
    rig.dev.input(text('x'));
    rig.post(0x50000, 8);
    expect(rig.out).toEqual([]);
    expect(rig.tx.usedIdx()).toBe(0);
    expect(rig.rx.usedIdx()).toBe(0);
    rig.dev.unpause();
    expect(rig.out.join('')).toBe('during pause');
    expect(rig.rx.usedIdx()).toBe(1);
  });

  it('a transmit chain outside guest RAM fails the device, not the VMM', () => {
    const rig = Rig.create();
    rig.tx.addChain([{ addr: 0x7fff_0000, len: 16, writable: false }]);
    notify(rig.t, TRANSMITQ);
    expect(rig.errors).toHaveLength(1);
    expect(mmioRead32(rig.t, MMIO_STATUS) & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
    expect(rig.out).toEqual([]);
  });

  it('a snapshot taken while paused restores with the queued output sent once and the pending input kept', () => {
    const rig = Rig.create();
    rig.dev.resize(80, 25);
    rig.dev.pause();
    rig.send('queued before the snapshot');
    rig.dev.input(text('typed'));
    const saved = JSON.parse(JSON.stringify(rig.t.state())) as ReturnType<VirtioMmioTransport['state']>;
    expect(rig.out).toEqual([]);

    const out: string[] = [];
    const dev = VirtioConsole.fromState({ output: (b) => out.push(str(b)) }, saved.device);
    const irq = new CountingLine();
    VirtioMmioTransport.fromState({ device: dev, memory: rig.mem, interrupt: irq }, saved);
    // Restored paused: the queued output waits for the VM's resume (a console client may attach first).
    expect(out).toEqual([]);
    dev.unpause();
    expect(out.join('')).toBe('queued before the snapshot');
    expect(rig.tx.usedIdx()).toBe(1);
    expect(dev.state()).toMatchObject({ cols: 80, rows: 25 });
    rig.rx.addChain([{ addr: 0x50000, len: 16, writable: true }]);
    dev.queueNotify(RECEIVEQ);
    expect(str(rig.mem.read(0x50000, 5))).toBe('typed');
  });

  it.each([
    [null, /state is not an object/],
    [{ cols: 70000, rows: 1, pendingInput: '' }, /cols and rows/],
    [{ cols: 1, rows: 1, pendingInput: '!!' }, /pendingInput is not base64/],
    [{ cols: 1, rows: 1, pendingInput: 'A'.repeat(MAX_PENDING_INPUT * 2) }, /longer than/],
  ])('refuses a bad saved state %#', (state, message) => {
    expect(() => VirtioConsole.fromState({ output: () => {} }, state)).toThrow(DeviceStateError);
    expect(() => VirtioConsole.fromState({ output: () => {} }, state)).toThrow(message);
  });
});
