/**
 * The virtio-mmio InterruptStatus registers shared between the transports (main thread) and the
 * vCPU threads' fast path: what a driver reads and acknowledges through either side is the same
 * register, and a snapshot carries it.
 */
import { describe, expect, it } from 'vitest';
import { anonymousGuestMemory } from '../../src/memory/guest-memory.js';
import {
  INTERRUPT_CONFIG_CHANGE, INTERRUPT_USED_BUFFER, MMIO_INTERRUPT_ACK, MMIO_INTERRUPT_STATUS, MMIO_QUEUE_NOTIFY, VirtioMmioTransport,
} from '../../src/devices/virtio/mmio.js';
import { VIRTIO_F_VERSION_1, bit, type VirtioActivation, type VirtioDevice } from '../../src/devices/virtio/device.js';
import { InterruptStatusTable } from '../../src/devices/virtio/interrupt-status.js';
import { VirtioInterruptFastPath } from '../../src/vmm/virtio-interrupt-fastpath.js';
import { CountingLine, MockQueue, bringUp, mmioRead32 } from '../devices/virtio/mock-driver.js';

const BASE = 0xd000_0000;
const SLOT = 0x1000;

class OneQueueDevice implements VirtioDevice {
  readonly deviceType = 42;
  readonly queueMaxSizes = [16];
  readonly deviceFeatures = bit(VIRTIO_F_VERSION_1);
  activation: VirtioActivation | null = null;
  readConfig(_o: number, data: Uint8Array): void { data.fill(0); }
  writeConfig(): void {}
  activate(a: VirtioActivation): void { this.activation = a; }
  queueNotify(): void {}
  reset(): void { this.activation = null; }
  state(): unknown { return {}; }
}

function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}

/** Two transports on slots 0 and 1 of one table, and a vCPU thread's fast path over both. */
function setup() {
  const table = new InterruptStatusTable(17);
  const mem = anonymousGuestMemory([{ guestBase: 0, size: 0x100000 }]);
  const rigs = [0, 1].map((slot) => {
    const device = new OneQueueDevice();
    const t = new VirtioMmioTransport({ device, memory: mem, interrupt: new CountingLine(), interruptStatus: table.cell(slot) });
    const q = new MockQueue(mem, 0x10000 * (slot + 1), 16);
    bringUp(t, bit(VIRTIO_F_VERSION_1), [q]);
    return { device, t };
  });
  const fast = VirtioInterruptFastPath.of({ table: table.buffer, base: BASE, slotSize: SLOT, slots: 2 })!;
  const raise = (slot: number): void => {
    const a = rigs[slot]!.device.activation!;
    a.queues[0]!.addUsed(0, 0);
    a.signalUsed(0);
  };
  return { table, rigs, fast, raise };
}

describe('virtio-mmio interrupt status shared with the vCPU threads', () => {
  it('the vCPU thread reads what the transport raised, per slot, and its ACK clears only the bits acknowledged', () => {
    const { rigs, fast, raise } = setup();
    raise(1);
    const data = new Uint8Array(4);
    expect(fast.answer(BASE + MMIO_INTERRUPT_STATUS, false, data)).toBe(true);
    expect(new DataView(data.buffer).getUint32(0, true)).toBe(0);
    expect(fast.answer(BASE + SLOT + MMIO_INTERRUPT_STATUS, false, data)).toBe(true);
    expect(new DataView(data.buffer).getUint32(0, true)).toBe(INTERRUPT_USED_BUFFER);
    rigs[1]!.t.configChanged();
    expect(mmioRead32(rigs[1]!.t, MMIO_INTERRUPT_STATUS)).toBe(INTERRUPT_USED_BUFFER | INTERRUPT_CONFIG_CHANGE);
    expect(fast.answer(BASE + SLOT + MMIO_INTERRUPT_ACK, true, u32(INTERRUPT_USED_BUFFER))).toBe(true);
    expect(mmioRead32(rigs[1]!.t, MMIO_INTERRUPT_STATUS)).toBe(INTERRUPT_CONFIG_CHANGE);
    expect(rigs[1]!.t.state().interruptStatus).toBe(INTERRUPT_CONFIG_CHANGE);
  });

  it('leaves every other access to the main thread: other registers, other sizes, slots without a device', () => {
    const { fast } = setup();
    const data = new Uint8Array(4);
    expect(fast.answer(BASE + MMIO_QUEUE_NOTIFY, true, data)).toBe(false);
    expect(fast.answer(BASE + MMIO_INTERRUPT_STATUS, false, new Uint8Array(2))).toBe(false);
    expect(fast.answer(BASE + 2 * SLOT + MMIO_INTERRUPT_STATUS, false, data)).toBe(false);
    expect(fast.answer(BASE - 4, false, data)).toBe(false);
    expect(VirtioInterruptFastPath.of({ table: new SharedArrayBuffer(68), base: BASE, slotSize: SLOT, slots: 0 })).toBeUndefined();
  });

  it('a restored transport puts its saved status back into its slot of the table', () => {
    const { rigs, raise } = setup();
    raise(0);
    const saved = rigs[0]!.t.state();
    const table = new InterruptStatusTable(17);
    const device = new OneQueueDevice();
    const mem = anonymousGuestMemory([{ guestBase: 0, size: 0x100000 }]);
    const irq = new CountingLine();
    VirtioMmioTransport.fromState({ device, memory: mem, interrupt: irq, interruptStatus: table.cell(3) }, saved);
    expect(table.cell(3).get()).toBe(INTERRUPT_USED_BUFFER);
    expect(irq.count).toBe(1);
  });
});
