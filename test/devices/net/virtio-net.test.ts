import { describe, expect, it } from 'vitest';
import { anonymousGuestMemory, type GuestMemory } from '../../../src/memory/guest-memory.js';
import {
  MAX_FRAME_BYTES, NET_HDR_BYTES, RXQ, TXQ, VIRTIO_ID_NET, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4,
  VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS, VirtioNet, type NetBackend, type NetOffloads,
} from '../../../src/devices/net/virtio-net/device.js';
import { MMIO_CONFIG, MMIO_DEVICE_ID, MMIO_STATUS, VirtioMmioTransport } from '../../../src/devices/virtio/mmio.js';
import { STATUS_DEVICE_NEEDS_RESET, VIRTIO_F_VERSION_1, bit } from '../../../src/devices/virtio/device.js';
import { DeviceStateError } from '../../../src/devices/errors.js';
import { CountingLine, MockQueue, bringUp, mmioRead32, notify, readDeviceFeatures, type Buf } from '../virtio/mock-driver.js';

const QSIZE = 256;
const MAC = '52:54:00:12:34:56';
const RX_BUF = 0x100000;
const TX_BUF = 0x400000;

/** The host side as a test double: frames queued for the guest, frames the guest sent. */
class FakeBackend implements NetBackend {
  readonly inbound: Uint8Array[] = [];
  readonly sent: Uint8Array[] = [];
  offloads: NetOffloads | undefined;
  watcher: (() => void) | undefined;
  refuse = false;
  read(buf: Uint8Array): number {
    const f = this.inbound.shift();
    if (f === undefined) return 0;
    buf.set(f);
    return f.length;
  }
  write(frame: Uint8Array): boolean {
    if (this.refuse) return false;
    this.sent.push(Uint8Array.from(frame));
    return true;
  }
  setOffloads(o: NetOffloads): void {
    this.offloads = o;
  }
  watch(onReadable: (() => void) | undefined): void {
    this.watcher = onReadable;
  }
  /** Frames arrive at the tap: the device is told when it is watching. */
  arrive(...frames: Uint8Array[]): void {
    this.inbound.push(...frames);
    this.watcher?.();
  }
}

/** A frame with a zeroed virtio-net header and `len` bytes of a pattern after it. */
function frame(len: number, seed = 1): Uint8Array {
  const f = new Uint8Array(NET_HDR_BYTES + len);
  for (let i = 0; i < len; i++) f[NET_HDR_BYTES + i] = (i * 7 + seed) & 0xff;
  return f;
}

const MERGEABLE = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_MRG_RXBUF);

class Rig {
  readonly irq = new CountingLine();
  readonly errors: string[] = [];
  readonly rx: MockQueue;
  readonly tx: MockQueue;
  readonly t: VirtioMmioTransport;
  readonly backend: FakeBackend;
  private rxAt = RX_BUF;
  private txAt = TX_BUF;
  readonly rxBufs = new Map<number, { addr: number; len: number }>();
  private rxSeen = 0;

  constructor(readonly mem: GuestMemory, readonly dev: VirtioNet, backend: FakeBackend, features: bigint) {
    this.backend = backend;
    this.t = new VirtioMmioTransport({ device: dev, memory: mem, interrupt: this.irq, onDeviceError: (r) => this.errors.push(r) });
    this.rx = new MockQueue(mem, 0x10000, QSIZE);
    this.tx = new MockQueue(mem, 0x20000, QSIZE);
    bringUp(this.t, features, [this.rx, this.tx].map((q) => ({ desc: q.desc, avail: q.avail, used: q.used, size: QSIZE })));
  }

  static create(features = MERGEABLE): Rig {
    const backend = new FakeBackend();
    const dev = new VirtioNet({ mac: MAC, backend });
    return new Rig(anonymousGuestMemory([{ guestBase: 0, size: 0x1000000 }]), dev, backend, features);
  }

  /** Posts `n` receive chains of one writable buffer of `size` bytes each. */
  postRx(n: number, size = 4096): void {
    for (let i = 0; i < n; i++) {
      const head = this.rx.addChain([{ addr: this.rxAt, len: size, writable: true }]);
      this.rxBufs.set(head, { addr: this.rxAt, len: size });
      this.rxAt += size;
    }
    notify(this.t, RXQ);
  }

  /** The guest sends `bytes` split over buffers of the given sizes. */
  send(bytes: Uint8Array, split: number[] = [bytes.length]): void {
    const bufs: Buf[] = [];
    let at = 0;
    for (const len of split) {
      this.mem.write(this.txAt, bytes.subarray(at, at + len));
      bufs.push({ addr: this.txAt, len, writable: false });
      this.txAt += len;
      at += len;
    }
    this.tx.addChain(bufs);
    notify(this.t, TXQ);
  }

  /** Frames the guest received since the last call, reassembled from num_buffers chains. */
  received(): Uint8Array[] {
    const out: Uint8Array[] = [];
    while (this.rxSeen < this.rx.usedIdx()) {
      const first = this.rx.usedElem(this.rxSeen);
      const head = this.mem.slice(this.rxBufs.get(first.id)!.addr, first.len);
      const count = head[10]! | (head[11]! << 8);
      const parts: Uint8Array[] = [];
      for (let i = 0; i < count; i++) {
        const e = this.rx.usedElem(this.rxSeen + i);
        parts.push(this.mem.read(this.rxBufs.get(e.id)!.addr, e.len));
      }
      this.rxSeen += count;
      const whole = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let o = 0;
      for (const p of parts) { whole.set(p, o); o += p.length; }
      out.push(whole);
    }
    return out;
  }

  needsReset(): boolean {
    return (mmioRead32(this.t, MMIO_STATUS) & STATUS_DEVICE_NEEDS_RESET) !== 0;
  }
}

/** The payload of a received frame, without its header (whose num_buffers the device set). */
const payload = (f: Uint8Array): Uint8Array => f.subarray(NET_HDR_BYTES);

describe('virtio-net', () => {
  it('is device 1 with the configured MAC and the link up, and offers the offloads and mergeable buffers', () => {
    const r = Rig.create();
    expect(mmioRead32(r.t, MMIO_DEVICE_ID)).toBe(VIRTIO_ID_NET);
    const config = new Uint8Array(8);
    for (let i = 0; i < 8; i++) {
      const b = new Uint8Array(1);
      r.t.mmioRead(MMIO_CONFIG + i, b);
      config[i] = b[0]!;
    }
    expect([...config.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':')).toBe(MAC);
    expect(config[6]! | (config[7]! << 8)).toBe(1);
    const features = readDeviceFeatures(r.t);
    for (const f of [VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4]) {
      expect(features & bit(f)).not.toBe(0n);
    }
  });

  it('tells the backend which receive offloads the driver took', () => {
    const r = Rig.create(MERGEABLE | bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_TSO4));
    expect(r.backend.offloads).toEqual({ csum: true, tso4: true, tso6: false });
    const plain = Rig.create();
    expect(plain.backend.offloads).toEqual({ csum: false, tso4: false, tso6: false });
    expect(VIRTIO_NET_F_GUEST_TSO6).toBe(8n);
  });

  it('sends each transmit chain as one frame, whether in one buffer or several', () => {
    const r = Rig.create();
    const a = frame(60, 1);
    const b = frame(3000, 2);
    r.send(a);
    r.send(b, [NET_HDR_BYTES, 1000, 2000]);
    expect(r.backend.sent).toEqual([a, b]);
    expect(r.tx.usedIdx()).toBe(2);
    expect(r.dev.counters()).toMatchObject({ tx_frames: 2, tx_bytes: 3060, tx_dropped: 0 });
    expect(r.irq.count).toBeGreaterThan(0);
  });

  it('drops (and returns) transmit chains shorter than a header or longer than a frame, and goes on', () => {
    const r = Rig.create();
    r.send(new Uint8Array(NET_HDR_BYTES - 1));
    r.send(frame(MAX_FRAME_BYTES), [NET_HDR_BYTES, MAX_FRAME_BYTES]);
    r.backend.refuse = true;
    r.send(frame(100));
    r.backend.refuse = false;
    const ok = frame(100, 9);
    r.send(ok);
    expect(r.backend.sent).toEqual([ok]);
    expect(r.tx.usedIdx()).toBe(4);
    expect(r.dev.counters()).toMatchObject({ tx_frames: 1, tx_dropped: 3 });
    expect(r.needsReset()).toBe(false);
  });

  it('spreads a large frame over as many mergeable buffers as it needs and says how many', () => {
    const r = Rig.create();
    r.postRx(8, 4096);
    const big = frame(9000, 3);
    const small = frame(42, 4);
    r.backend.arrive(big, small);
    const got = r.received();
    expect(got.map(payload)).toEqual([payload(big), payload(small)]);
    // 9012 bytes over 4096-byte buffers: three chains, then one for the small frame.
    expect(r.rx.usedIdx()).toBe(4);
    expect(got[0]![10]).toBe(3);
    expect(r.dev.counters()).toMatchObject({ rx_frames: 2, rx_bytes: 9042, rx_dropped: 0 });
  });

  it('holds a frame while the guest has posted too few buffers, stops reading, and delivers it in order later', () => {
    const r = Rig.create();
    r.postRx(2, 4096);
    const big = frame(9000, 5);
    const next = frame(100, 6);
    r.backend.arrive(big, next);
    expect(r.rx.usedIdx()).toBe(0);
    expect(r.backend.watcher).toBeUndefined();
    expect(r.backend.inbound).toEqual([next]);
    r.postRx(4, 4096);
    expect(r.received().map(payload)).toEqual([payload(big), payload(next)]);
    expect(r.backend.watcher).toBeDefined();
  });

  it('without mergeable buffers puts each frame in one chain and drops one that does not fit', () => {
    const r = Rig.create(bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_NET_F_MAC));
    r.postRx(2, 2048);
    const tooBig = frame(4000, 7);
    const fits = frame(1500, 8);
    r.backend.arrive(tooBig, fits);
    const got = r.received();
    expect(got.map(payload)).toEqual([payload(fits)]);
    expect(got[0]![10]).toBe(1);
    expect(r.dev.counters()).toMatchObject({ rx_frames: 1, rx_dropped: 1 });
  });

  it('marks itself NEEDS_RESET on a looping transmit chain, and stays usable after the driver resets it', () => {
    const r = Rig.create();
    r.tx.writeDesc(0, TX_BUF, 64, 1 /* NEXT */, 0);
    r.tx.publish(0);
    notify(r.t, TXQ);
    expect(r.needsReset()).toBe(true);
    expect(r.errors.join()).toMatch(/loop/);
    expect(r.backend.watcher).toBeUndefined();
    // The driver resets the device and sets its queues up afresh.
    r.mem.fill(0x10000, 0x30000);
    const again = new Rig(r.mem, r.dev, r.backend, MERGEABLE);
    const f = frame(80);
    again.send(f);
    expect(r.backend.sent).toEqual([f]);
  });

  it('marks itself NEEDS_RESET on a mergeable receive buffer smaller than the header', () => {
    const r = Rig.create();
    r.postRx(1, NET_HDR_BYTES - 2);
    r.backend.arrive(frame(10));
    expect(r.needsReset()).toBe(true);
    expect(r.errors.join()).toMatch(/less than the 12-byte header/);
  });

  it('moves no frame while paused, and all of them after', () => {
    const r = Rig.create();
    r.postRx(4);
    r.dev.pause();
    const f = frame(200);
    r.backend.inbound.push(f);
    r.send(frame(50));
    expect(r.backend.sent).toEqual([]);
    expect(r.rx.usedIdx()).toBe(0);
    r.dev.unpause();
    expect(r.backend.sent.length).toBe(1);
    expect(r.received().map(payload)).toEqual([payload(f)]);
  });

  it('saves its MAC and restores only onto the same MAC', () => {
    const backend = new FakeBackend();
    const dev = new VirtioNet({ mac: MAC.toUpperCase(), backend });
    expect(dev.state()).toEqual({ mac: MAC });
    expect(() => VirtioNet.fromState({ mac: MAC, backend }, { mac: MAC })).not.toThrow();
    expect(() => VirtioNet.fromState({ mac: MAC, backend }, { mac: '52:54:00:00:00:01' })).toThrow(DeviceStateError);
    expect(() => VirtioNet.fromState({ mac: MAC, backend }, { mac: 'nope' })).toThrow(/not a MAC address/);
    expect(() => VirtioNet.fromState({ mac: MAC, backend }, null)).toThrow(DeviceStateError);
  });
});
