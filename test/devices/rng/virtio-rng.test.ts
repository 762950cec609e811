import { describe, expect, it, vi } from 'vitest';
import { RateLimiter } from '../../../src/devices/rate-limiter.js';
import { anonymousGuestMemory } from '../../../src/memory/guest-memory.js';
import { MAX_REQUEST_BYTES, VIRTIO_ID_RNG, VirtioRng } from '../../../src/devices/rng/virtio-rng/device.js';
import { MMIO_DEVICE_ID, MMIO_STATUS, VirtioMmioTransport } from '../../../src/devices/virtio/mmio.js';
import { STATUS_DEVICE_NEEDS_RESET, VIRTIO_F_VERSION_1, bit } from '../../../src/devices/virtio/device.js';
import { DeviceStateError } from '../../../src/devices/errors.js';
import { CountingLine, MockQueue, bringUp, mmioRead32, notify } from '../virtio/mock-driver.js';

const QSIZE = 16;

/** A guest with virtio-rng whose entropy source counts up from 1, so filled bytes are recognisable. */
function rig(paused = false, rateLimiter?: RateLimiter) {
  const mem = anonymousGuestMemory([{ guestBase: 0, size: 0x200000 }]);
  let next = 1;
  const fill = (buf: Uint8Array): void => { for (let i = 0; i < buf.length; i++) buf[i] = next++ & 0xff; };
  const opts = { fill, ...(rateLimiter === undefined ? {} : { rateLimiter }) };
  const dev = paused ? VirtioRng.fromState(opts, {}) : new VirtioRng(opts);
  const irq = new CountingLine();
  const errors: string[] = [];
  const t = new VirtioMmioTransport({ device: dev, memory: mem, interrupt: irq, onDeviceError: (r) => errors.push(r) });
  const q = new MockQueue(mem, 0x10000, QSIZE);
  bringUp(t, bit(VIRTIO_F_VERSION_1), [{ desc: q.desc, avail: q.avail, used: q.used, size: QSIZE }]);
  return { mem, dev, t, q, irq, errors };
}

describe('virtio-rng', () => {
  it('is device 4 with one queue', () => {
    const { t, dev } = rig();
    expect(mmioRead32(t, MMIO_DEVICE_ID)).toBe(VIRTIO_ID_RNG);
    expect(dev.queueMaxSizes).toHaveLength(1);
  });

  it('fills each posted buffer from the source, returns it with its length and interrupts', () => {
    const { mem, t, q, irq, dev } = rig();
    const head = q.addChain([{ addr: 0x40000, len: 16, writable: true }]);
    notify(t, 0);
    expect(q.usedElem(0)).toEqual({ id: head, len: 16 });
    expect([...mem.read(0x40000, 16)]).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    expect(irq.count).toBe(1);
    expect(dev.counters()).toEqual({ bytes: 16, requests: 1, throttled: 0 });
  });

  it('writes only device-writable buffers and caps what one request gets', () => {
    const { mem, t, q } = rig();
    mem.write(0x40000, Uint8Array.of(0xaa, 0xbb));
    q.addChain([{ addr: 0x40000, len: 2, writable: false }, { addr: 0x50000, len: 4, writable: true }]);
    q.addChain([{ addr: 0x60000, len: MAX_REQUEST_BYTES * 4, writable: true }]);
    notify(t, 0);
    expect([...mem.read(0x40000, 2)]).toEqual([0xaa, 0xbb]);
    expect(q.usedElem(0).len).toBe(4);
    expect(q.usedElem(1).len).toBe(MAX_REQUEST_BYTES);
  });

  it('a buffer outside guest RAM fails the device, not the VMM', () => {
    const { t, q, errors } = rig();
    q.addChain([{ addr: 0x7fff_0000, len: 16, writable: true }]);
    notify(t, 0);
    expect(errors).toHaveLength(1);
    expect(mmioRead32(t, MMIO_STATUS) & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
  });

  it('restored paused: requests posted before the snapshot are served at resume', () => {
    const { t, q, dev } = rig(true);
    q.addChain([{ addr: 0x40000, len: 8, writable: true }]);
    notify(t, 0);
    expect(q.usedIdx()).toBe(0);
    dev.unpause();
    expect(q.usedIdx()).toBe(1);
  });

  it('has no state of its own, and refuses a state that says otherwise', () => {
    expect(new VirtioRng({ fill: () => {} }).state()).toEqual({});
    for (const bad of [null, [], { bytes: 3 }]) expect(() => VirtioRng.fromState({ fill: () => {} }, bad)).toThrow(DeviceStateError);
  });

  it('with a bandwidth limit, a request gets what the bucket holds and the rest of the queue waits for a timer', () => {
    vi.useFakeTimers();
    try {
      let now = 0;
      const limiter = new RateLimiter({ bandwidth: { size: 100, refill_time: 1000 } }, () => now);
      const { t, q, irq, dev } = rig(false, limiter);
      q.addChain([{ addr: 0x40000, len: 64, writable: true }]);
      q.addChain([{ addr: 0x41000, len: 64, writable: true }]);
      q.addChain([{ addr: 0x42000, len: 64, writable: true }]);
      notify(t, 0);
      // 100 tokens: the first request whole, the second the 36 left, the third waits.
      expect([q.usedElem(0).len, q.usedElem(1).len]).toEqual([64, 36]);
      expect(q.usedIdx()).toBe(2);
      expect(dev.counters()).toMatchObject({ bytes: 100, requests: 2, throttled: 1 });
      expect(irq.count).toBe(1);
      // Half the refill time later, 50 tokens are back; the timer serves the waiting request.
      now = 500;
      vi.advanceTimersByTime(500);
      expect(q.usedIdx()).toBe(3);
      expect(q.usedElem(2).len).toBe(50);
      expect(irq.count).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it('with an ops limit, requests beyond the bucket wait; pause cancels the wait and resume serves them', () => {
    vi.useFakeTimers();
    try {
      let now = 0;
      const limiter = new RateLimiter({ ops: { size: 2, refill_time: 1000, one_time_burst: 1 } }, () => now);
      const { t, q, dev } = rig(false, limiter);
      for (let i = 0; i < 5; i++) q.addChain([{ addr: 0x40000 + i * 0x1000, len: 8, writable: true }]);
      notify(t, 0);
      expect(q.usedIdx()).toBe(3); // 2 in the bucket + 1 one-time burst
      dev.pause();
      now = 2000;
      vi.advanceTimersByTime(2000);
      expect(q.usedIdx()).toBe(3); // paused: nothing served
      dev.unpause();
      expect(q.usedIdx()).toBe(5);
    } finally {
      vi.useRealTimers();
    }
  });
});

