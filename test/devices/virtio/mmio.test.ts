import { describe, expect, it } from 'vitest';
import { anonymousGuestMemory } from '../../../src/memory/guest-memory.js';
import {
  INTERRUPT_CONFIG_CHANGE, INTERRUPT_USED_BUFFER, MMIO_CONFIG, MMIO_CONFIG_GENERATION, MMIO_DEVICE_ID,
  MMIO_INTERRUPT_ACK, MMIO_INTERRUPT_STATUS, MMIO_MAGIC_VALUE, MMIO_QUEUE_DESC_LOW, MMIO_QUEUE_NUM_MAX,
  MMIO_QUEUE_READY, MMIO_QUEUE_SEL, MMIO_STATUS, MMIO_VENDOR_ID, MMIO_VERSION, VirtioMmioTransport,
} from '../../../src/devices/virtio/mmio.js';
import {
  STATUS_ACKNOWLEDGE, STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK,
  VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1, bit, type VirtioActivation, type VirtioDevice,
} from '../../../src/devices/virtio/device.js';
import { DeviceStateError } from '../../../src/devices/errors.js';
import { VIRTQ_AVAIL_F_NO_INTERRUPT } from '../../../src/devices/virtio/queue.js';
import {
  CountingLine, MockQueue, ackInterrupt, bringUp, mmioRead32, mmioWrite32, notify, readDeviceFeatures, writeDriverFeatures,
} from './mock-driver.js';

/** A device that records what the transport asks of it. */
class RecordingDevice implements VirtioDevice {
  readonly deviceType = 42;
  readonly queueMaxSizes = [16, 8];
  readonly deviceFeatures = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX) | bit(3n);
  activation: VirtioActivation | null = null;
  activations = 0;
  resets = 0;
  notified: number[] = [];
  configWrites: Array<[number, number[]]> = [];
  readConfig(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) data[i] = (offset + i) & 0xff;
  }
  writeConfig(offset: number, data: Uint8Array): void {
    this.configWrites.push([offset, [...data]]);
  }
  activate(a: VirtioActivation): void { this.activation = a; this.activations++; }
  queueNotify(i: number): void { this.notified.push(i); }
  reset(): void { this.activation = null; this.resets++; }
  state(): unknown { return { kind: 'recording' }; }
}

function setup() {
  const mem = anonymousGuestMemory([{ guestBase: 0, size: 0x100000 }]);
  const device = new RecordingDevice();
  const irq = new CountingLine();
  const errors: string[] = [];
  const t = new VirtioMmioTransport({ device, memory: mem, interrupt: irq, onDeviceError: (r) => errors.push(r) });
  const q0 = new MockQueue(mem, 0x10000, 16);
  const q1 = new MockQueue(mem, 0x20000, 8);
  return { mem, device, irq, t, q0, q1, errors };
}

const ALL = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK;

describe('virtio-mmio identification', () => {
  it('reads magic, version 2, device and vendor ids, features and queue max', () => {
    const { t } = setup();
    expect(mmioRead32(t, MMIO_MAGIC_VALUE)).toBe(0x74726976);
    expect(mmioRead32(t, MMIO_VERSION)).toBe(2);
    expect(mmioRead32(t, MMIO_DEVICE_ID)).toBe(42);
    expect(mmioRead32(t, MMIO_VENDOR_ID)).toBe(0x554d4551);
    expect(readDeviceFeatures(t)).toBe(bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX) | bit(3n));
    mmioWrite32(t, MMIO_QUEUE_SEL, 1);
    expect(mmioRead32(t, MMIO_QUEUE_NUM_MAX)).toBe(8);
    mmioWrite32(t, MMIO_QUEUE_SEL, 2);
    expect(mmioRead32(t, MMIO_QUEUE_NUM_MAX)).toBe(0);
  });

  it('ignores register accesses that are not 32-bit and passes config space through', () => {
    const { t, device } = setup();
    const b = new Uint8Array(2);
    t.mmioRead(MMIO_MAGIC_VALUE, b);
    expect([...b]).toEqual([0, 0]);
    const c = new Uint8Array(2);
    t.mmioRead(MMIO_CONFIG + 5, c);
    expect([...c]).toEqual([5, 6]);
    t.mmioWrite(MMIO_CONFIG, new Uint8Array([1]));
    expect(device.configWrites).toEqual([]); // before DRIVER: ignored
    mmioWrite32(t, MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    t.mmioWrite(MMIO_CONFIG + 3, new Uint8Array([9]));
    expect(device.configWrites).toEqual([[3, [9]]]);
  });
});

describe('virtio-mmio FEATURES_OK handshake', () => {
  it('accepts a VERSION_1 subset of the offered features', () => {
    const { t, q0, q1, device } = setup();
    expect(bringUp(t, bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX), [q0, q1])).toBe(ALL);
    expect(device.activations).toBe(1);
    expect(device.activation!.ackedFeatures).toBe(bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX));
    expect(device.activation!.queues[0]!.eventIdx).toBe(true);
  });

  it('refuses a feature that was not offered', () => {
    const { t, q0, device } = setup();
    const s = bringUp(t, bit(VIRTIO_F_VERSION_1) | bit(5n), [q0]);
    expect(s & STATUS_FEATURES_OK).toBe(0);
    mmioWrite32(t, MMIO_STATUS, s | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    expect(mmioRead32(t, MMIO_STATUS) & (STATUS_FEATURES_OK | STATUS_DRIVER_OK)).toBe(0);
    expect(device.activations).toBe(0);
  });

  it('refuses a driver that did not ack VERSION_1 (legacy)', () => {
    const { t, q0 } = setup();
    expect(bringUp(t, bit(3n), [q0]) & STATUS_FEATURES_OK).toBe(0);
  });

  it('freezes driver features after FEATURES_OK and ignores status bits being cleared', () => {
    const { t, q0, device } = setup();
    bringUp(t, bit(VIRTIO_F_VERSION_1), [q0]);
    writeDriverFeatures(t, bit(VIRTIO_F_VERSION_1) | bit(3n));
    expect(device.activation!.ackedFeatures).toBe(bit(VIRTIO_F_VERSION_1));
    expect(t.state().ackedFeatures).toBe(bit(VIRTIO_F_VERSION_1).toString(16));
    mmioWrite32(t, MMIO_STATUS, STATUS_ACKNOWLEDGE);
    expect(mmioRead32(t, MMIO_STATUS)).toBe(ALL);
  });
});

describe('virtio-mmio queues and interrupts', () => {
  it('ignores queue configuration once the queue is ready or the device is live', () => {
    const { t, q0, q1, device } = setup();
    bringUp(t, bit(VIRTIO_F_VERSION_1), [q0]);
    mmioWrite32(t, MMIO_QUEUE_SEL, 0);
    mmioWrite32(t, MMIO_QUEUE_DESC_LOW, 0x50000);
    expect(device.activation!.queues[0]!.descTable).toBe(q0.desc);
    mmioWrite32(t, MMIO_QUEUE_SEL, 1); // not ready, but after DRIVER_OK
    mmioWrite32(t, MMIO_QUEUE_DESC_LOW, q1.desc);
    expect(device.activation!.queues[1]!.descTable).toBe(0);
    expect(mmioRead32(t, MMIO_QUEUE_READY)).toBe(0);
  });

  it('lets the driver take a queue back before DRIVER_OK, then reconfigure it', () => {
    const { t, q0 } = setup();
    mmioWrite32(t, MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    bringUpQueue(t, q0);
    expect(mmioRead32(t, MMIO_QUEUE_READY)).toBe(1);
    mmioWrite32(t, MMIO_QUEUE_DESC_LOW, 0x50000); // ignored while ready
    expect(t.state().queues[0]!.descTable).toBe(q0.desc);
    mmioWrite32(t, MMIO_QUEUE_READY, 0);
    expect(mmioRead32(t, MMIO_QUEUE_READY)).toBe(0);
    mmioWrite32(t, MMIO_QUEUE_DESC_LOW, 0x50000);
    expect(t.state().queues[0]!.descTable).toBe(0x50000);
  });

  it('forwards QueueNotify only to a live device and a queue that exists', () => {
    const { t, q0, device } = setup();
    notify(t, 0);
    expect(device.notified).toEqual([]);
    bringUp(t, bit(VIRTIO_F_VERSION_1), [q0]);
    notify(t, 0);
    notify(t, 7);
    t.queueNotify(1); // ioeventfd path
    expect(device.notified).toEqual([0, 1]);
  });

  it('raises the used-buffer interrupt unless the driver suppressed it; InterruptACK clears it', () => {
    const { t, q0, device, irq } = setup();
    bringUp(t, bit(VIRTIO_F_VERSION_1), [q0]);
    const q = device.activation!.queues[0]!;
    q.addUsed(0, 0);
    device.activation!.signalUsed(0);
    expect(irq.count).toBe(1);
    expect(mmioRead32(t, MMIO_INTERRUPT_STATUS)).toBe(INTERRUPT_USED_BUFFER);
    mmioWrite32(t, MMIO_INTERRUPT_ACK, INTERRUPT_USED_BUFFER);
    expect(mmioRead32(t, MMIO_INTERRUPT_STATUS)).toBe(0);
    q0.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
    q.addUsed(0, 0);
    device.activation!.signalUsed(0);
    expect(irq.count).toBe(1);
    expect(mmioRead32(t, MMIO_INTERRUPT_STATUS)).toBe(0);
  });

  it('sets DEVICE_NEEDS_RESET with a config interrupt for a bad queue, and recovers by reset', () => {
    const { t, q0, device, irq, errors } = setup();
    mmioWrite32(t, MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    writeDriverFeatures(t, bit(VIRTIO_F_VERSION_1));
    mmioWrite32(t, MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    // Size 12 is not a power of two.
    bringUpQueue(t, { ...q0, size: 12 });
    expect(mmioRead32(t, MMIO_QUEUE_READY)).toBe(0);
    expect(mmioRead32(t, MMIO_STATUS) & STATUS_DEVICE_NEEDS_RESET).toBeTruthy();
    expect(ackInterrupt(t)).toBe(INTERRUPT_CONFIG_CHANGE);
    expect(irq.count).toBe(1);
    expect(errors[0]).toMatch(/queue 0: queue size 12/);
    mmioWrite32(t, MMIO_STATUS, mmioRead32(t, MMIO_STATUS) | STATUS_DRIVER_OK);
    expect(device.activations).toBe(0);
    // Reset and a correct bring-up work again.
    expect(bringUp(t, bit(VIRTIO_F_VERSION_1), [q0])).toBe(ALL);
    expect(device.activations).toBe(1);
  });

  it('a device error stops the device until reset', () => {
    const { t, q0, device, irq } = setup();
    bringUp(t, bit(VIRTIO_F_VERSION_1), [q0]);
    device.activation!.deviceError('broken ring');
    expect(mmioRead32(t, MMIO_STATUS)).toBe(ALL | STATUS_DEVICE_NEEDS_RESET);
    expect(device.resets).toBe(1);
    expect(irq.count).toBe(1);
    notify(t, 0);
    expect(device.notified).toEqual([]);
    mmioWrite32(t, MMIO_STATUS, 0);
    expect(mmioRead32(t, MMIO_STATUS)).toBe(0);
    expect(mmioRead32(t, MMIO_INTERRUPT_STATUS)).toBe(0);
    mmioWrite32(t, MMIO_QUEUE_SEL, 0);
    expect(mmioRead32(t, MMIO_QUEUE_READY)).toBe(0);
  });

  it('configChanged bumps the generation, and interrupts only a running driver (§2.1.2)', () => {
    const { t, q0, irq } = setup();
    t.configChanged();
    expect(mmioRead32(t, MMIO_CONFIG_GENERATION)).toBe(1);
    expect(mmioRead32(t, MMIO_INTERRUPT_STATUS)).toBe(0);
    expect(irq.count).toBe(0);
    bringUp(t, bit(VIRTIO_F_VERSION_1), [q0]);
    t.configChanged();
    expect(mmioRead32(t, MMIO_CONFIG_GENERATION)).toBe(2);
    expect(mmioRead32(t, MMIO_INTERRUPT_STATUS)).toBe(INTERRUPT_CONFIG_CHANGE);
    expect(irq.count).toBe(1);
  });
});

function bringUpQueue(t: VirtioMmioTransport, q: { desc: number; avail: number; used: number; size: number }) {
  mmioWrite32(t, MMIO_QUEUE_SEL, 0);
  mmioWrite32(t, 0x038, q.size);
  mmioWrite32(t, MMIO_QUEUE_DESC_LOW, q.desc);
  mmioWrite32(t, 0x090, q.avail);
  mmioWrite32(t, 0x0a0, q.used);
  mmioWrite32(t, MMIO_QUEUE_READY, 1);
}

describe('virtio-mmio state', () => {
  it('round-trips, re-activates a live device and re-raises pending interrupts', () => {
    const { t, q0, device, mem } = setup();
    bringUp(t, bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX), [q0]);
    device.activation!.queues[0]!.addUsed(0, 0);
    device.activation!.signalUsed(0);
    const s = t.state();
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
    const dev2 = new RecordingDevice();
    const irq2 = new CountingLine();
    const t2 = VirtioMmioTransport.fromState({ device: dev2, memory: mem, interrupt: irq2 }, s);
    expect(t2.state()).toEqual(s);
    expect(dev2.activations).toBe(1);
    expect(dev2.activation!.queues[0]!.nextUsed).toBe(1);
    expect(irq2.count).toBe(1);
  });

  it('rejects impossible states', () => {
    const { t, q0, mem } = setup();
    bringUp(t, bit(VIRTIO_F_VERSION_1), [q0]);
    const s = t.state();
    const restore = (x: unknown) => VirtioMmioTransport.fromState({ device: new RecordingDevice(), memory: mem, interrupt: new CountingLine() }, x as typeof s);
    expect(() => restore({ ...s, ackedFeatures: (bit(VIRTIO_F_VERSION_1) | bit(7n)).toString(16) })).toThrow(DeviceStateError);
    expect(() => restore({ ...s, ackedFeatures: '8' })).toThrow(/VERSION_1/);
    expect(() => restore({ ...s, status: STATUS_DRIVER_OK })).toThrow(DeviceStateError);
    expect(() => restore({ ...s, interruptStatus: 4 })).toThrow(DeviceStateError);
    expect(() => restore({ ...s, queues: [s.queues[0]] })).toThrow(/2 queues/);
    expect(() => restore({ ...s, queues: [{ ...s.queues[0]!, size: 3 }, s.queues[1]] })).toThrow(DeviceStateError);
    expect(() => restore({ ...s, queues: [{ ...s.queues[0]!, maxSize: 32 }, s.queues[1]] })).toThrow(/max size/);
  });
});
