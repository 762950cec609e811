import { describe, expect, it } from 'vitest';
import { anonymousGuestMemory, type GuestMemory } from '../../../src/memory/guest-memory.js';
import {
  BUF_ALLOC, EVENTQ, MAX_PAYLOAD, RXQ, TXQ, VIRTIO_ID_VSOCK, VirtioVsock, type VsockConnectionEvents, type VsockHostEnd,
} from '../../../src/devices/vsock/virtio-vsock/device.js';
import {
  HEADER_BYTES, HOST_CID, OP_CREDIT_REQUEST, OP_CREDIT_UPDATE, OP_REQUEST, OP_RESPONSE, OP_RST, OP_RW, OP_SHUTDOWN,
  SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM, parseHeader, writeHeader, type VsockHeader,
} from '../../../src/devices/vsock/virtio-vsock/packet.js';
import { MMIO_CONFIG, MMIO_DEVICE_ID, MMIO_STATUS, VirtioMmioTransport } from '../../../src/devices/virtio/mmio.js';
import { STATUS_DEVICE_NEEDS_RESET, VIRTIO_F_VERSION_1, bit } from '../../../src/devices/virtio/device.js';
import { DeviceStateError } from '../../../src/devices/errors.js';
import { CountingLine, MockQueue, bringUp, mmioRead32, notify } from '../virtio/mock-driver.js';

const QSIZE = 256;
const CID = 42;
const RX_BUF = 0x40000;
const RX_BUF_SIZE = 4096 + HEADER_BYTES;
const TX_BUF = 0x100000;
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (b: Uint8Array): string => new TextDecoder().decode(b);

/** A host end that records what the device does with it. */
class FakeEnd implements VsockHostEnd {
  readonly written: Uint8Array[] = [];
  readonly doneCallbacks: (() => void)[] = [];
  ended = false;
  destroyed = false;
  paused = false;
  write(bytes: Uint8Array, done: () => void): void {
    this.written.push(Uint8Array.from(bytes));
    this.doneCallbacks.push(done);
  }
  end(): void { this.ended = true; }
  destroy(): void { this.destroyed = true; }
  pause(): void { this.paused = true; }
  resume(): void { this.paused = false; }
  /** The host end takes everything written so far. */
  drain(): void {
    for (const d of this.doneCallbacks.splice(0)) d();
  }
  text(): string {
    return this.written.map(str).join('');
  }
}

interface Received { header: VsockHeader; payload: Uint8Array }

/** A guest with a vsock device and a test driver; rx buffers are posted up front. */
class Rig {
  readonly irq = new CountingLine();
  readonly errors: string[] = [];
  readonly rx: MockQueue;
  readonly tx: MockQueue;
  readonly ev: MockQueue;
  readonly t: VirtioMmioTransport;
  private rxSeen = 0;
  private rxPosted = 0;
  private txAt = TX_BUF;

  constructor(readonly mem: GuestMemory, readonly dev: VirtioVsock, readonly toHost: { port: number; events: VsockConnectionEvents }[], rxBuffers: number) {
    this.t = new VirtioMmioTransport({ device: dev, memory: mem, interrupt: this.irq, onDeviceError: (r) => this.errors.push(r) });
    this.rx = new MockQueue(mem, 0x10000, QSIZE);
    this.tx = new MockQueue(mem, 0x20000, QSIZE);
    this.ev = new MockQueue(mem, 0x30000, QSIZE);
    bringUp(this.t, bit(VIRTIO_F_VERSION_1), [this.rx, this.tx, this.ev].map((q) => ({ desc: q.desc, avail: q.avail, used: q.used, size: QSIZE })));
    this.postRx(rxBuffers);
  }

  static create(rxBuffers = 32): Rig {
    const toHost: Rig['toHost'] = [];
    const dev = new VirtioVsock({ guestCid: CID, connectToHost: (port, events) => toHost.push({ port, events }) });
    return new Rig(anonymousGuestMemory([{ guestBase: 0, size: 0x400000 }]), dev, toHost, rxBuffers);
  }

  /** Posts `n` rx buffers as Linux 6.1 does: a header descriptor and a 4 KiB data descriptor. */
  postRx(n: number): void {
    for (let i = 0; i < n; i++, this.rxPosted++) {
      // Two descriptors per chain: the chain's head index / 2 names its buffer.
      const at = RX_BUF + ((this.rxPosted * 2) % QSIZE / 2) * RX_BUF_SIZE;
      this.rx.addChain([{ addr: at, len: HEADER_BYTES, writable: true }, { addr: at + HEADER_BYTES, len: 4096, writable: true }]);
    }
    notify(this.t, RXQ);
  }

  /** The guest sends one packet (header and payload in separate buffers, as Linux does). */
  send(h: Partial<VsockHeader> & { op: number }, payload: Uint8Array = new Uint8Array(0), headerLen = HEADER_BYTES): void {
    const header: VsockHeader = {
      srcCid: CID, dstCid: HOST_CID, srcPort: 5000, dstPort: 1234, len: payload.length, type: TYPE_STREAM,
      flags: 0, bufAlloc: BUF_ALLOC, fwdCnt: 0, ...h,
    };
    const hb = new Uint8Array(HEADER_BYTES);
    writeHeader(header, hb);
    const at = this.txAt;
    this.txAt += HEADER_BYTES + payload.length + 64;
    if (this.txAt > TX_BUF + 0x1e0000) this.txAt = TX_BUF;
    this.mem.write(at, hb);
    this.mem.write(at + HEADER_BYTES, payload);
    const bufs = [{ addr: at, len: headerLen, writable: false }];
    if (payload.length > 0) bufs.push({ addr: at + HEADER_BYTES, len: payload.length, writable: false });
    this.tx.addChain(bufs);
    notify(this.t, TXQ);
  }

  /** Packets the device put in rx buffers since the last call. */
  received(): Received[] {
    const out: Received[] = [];
    for (; this.rxSeen < this.rx.usedIdx(); this.rxSeen++) {
      const e = this.rx.usedElem(this.rxSeen);
      const at = RX_BUF + (e.id / 2) * RX_BUF_SIZE;
      const bytes = this.mem.slice(at, e.len);
      const header = parseHeader(bytes);
      out.push({ header, payload: bytes.subarray(HEADER_BYTES, HEADER_BYTES + header.len) });
    }
    return out;
  }

  /** A guest-initiated connection from guest port 5000 to host port 1234, accepted by the host. */
  connect(): FakeEnd {
    this.send({ op: OP_REQUEST });
    const end = new FakeEnd();
    this.toHost.at(-1)!.events.hostConnected(end);
    const [response] = this.received();
    expect(response!.header.op).toBe(OP_RESPONSE);
    return end;
  }
}

describe('virtio-vsock', () => {
  it('is device 19 with three queues, offers VERSION_1 and reports its CID as a 64-bit field', () => {
    const rig = Rig.create();
    expect(mmioRead32(rig.t, MMIO_DEVICE_ID)).toBe(VIRTIO_ID_VSOCK);
    expect(rig.dev.queueMaxSizes).toHaveLength(3);
    expect(rig.dev.deviceFeatures).toBe(bit(VIRTIO_F_VERSION_1));
    expect(mmioRead32(rig.t, MMIO_CONFIG)).toBe(CID);
    expect(mmioRead32(rig.t, MMIO_CONFIG + 4)).toBe(0);
  });

  it('guest → host: REQUEST opens the host end, RESPONSE follows, data flows both ways with credit', () => {
    const rig = Rig.create();
    rig.send({ op: OP_REQUEST, bufAlloc: 10 });
    expect(rig.toHost.map((c) => c.port)).toEqual([1234]);
    expect(rig.received()).toEqual([]); // nothing until the host end is open
    const end = new FakeEnd();
    rig.toHost[0]!.events.hostConnected(end);
    const [response] = rig.received();
    expect(response!.header).toMatchObject({ op: OP_RESPONSE, srcCid: HOST_CID, dstCid: CID, srcPort: 1234, dstPort: 5000, bufAlloc: BUF_ALLOC, fwdCnt: 0 });

    rig.send({ op: OP_RW, bufAlloc: 10 }, text('hello host'));
    expect(end.text()).toBe('hello host');

    // Host data: the guest advertised 10 bytes of buffer, so only 10 go now.
    rig.toHost[0]!.events.hostData(text('0123456789abcdef'));
    const first = rig.received();
    expect(first).toHaveLength(1);
    expect(first[0]!.header).toMatchObject({ op: OP_RW, len: 10 });
    expect(str(first[0]!.payload)).toBe('0123456789');
    expect(rig.received()).toEqual([]);
    // The guest read them: its credit update lets the rest go.
    rig.send({ op: OP_CREDIT_UPDATE, bufAlloc: 10, fwdCnt: 10 });
    expect(rig.received().map((p) => str(p.payload))).toEqual(['abcdef']);
    expect(rig.dev.counters()).toMatchObject({ tx_bytes: 10, rx_bytes: 16, connections: 1 });
  });

  it('reports freed buffer space once the host end took a quarter of BUF_ALLOC, and answers CREDIT_REQUEST', () => {
    const rig = Rig.create();
    const end = rig.connect();
    const chunk = new Uint8Array(MAX_PAYLOAD);
    rig.send({ op: OP_RW }, chunk);
    expect(rig.received()).toEqual([]);
    end.drain();
    const [update] = rig.received();
    expect(update!.header).toMatchObject({ op: OP_CREDIT_UPDATE, fwdCnt: MAX_PAYLOAD, bufAlloc: BUF_ALLOC });
    rig.send({ op: OP_CREDIT_REQUEST });
    expect(rig.received().map((p) => p.header.op)).toEqual([OP_CREDIT_UPDATE]);
  });

  it('a guest that sends beyond the credit it was given gets its connection reset', () => {
    const rig = Rig.create();
    const end = rig.connect();
    for (let i = 0; i < BUF_ALLOC / MAX_PAYLOAD; i++) rig.send({ op: OP_RW }, new Uint8Array(MAX_PAYLOAD));
    expect(end.destroyed).toBe(false);
    rig.send({ op: OP_RW }, text('one byte too many'));
    expect(end.destroyed).toBe(true);
    expect(rig.received().map((p) => p.header.op)).toEqual([OP_RST]);
    expect(rig.dev.connectionCount()).toBe(0);
  });

  it('host → guest: the guest gets a REQUEST from a host port at 2^30; RESPONSE accepts, RST refuses', () => {
    const rig = Rig.create();
    const accepted: number[] = [];
    let refused = 0;
    const end = new FakeEnd();
    rig.dev.connectFromHost(52, end, (p) => accepted.push(p), () => refused++);
    const [request] = rig.received();
    expect(request!.header).toMatchObject({ op: OP_REQUEST, srcCid: HOST_CID, dstCid: CID, dstPort: 52 });
    expect(request!.header.srcPort).toBeGreaterThanOrEqual(2 ** 30);
    rig.send({ op: OP_RESPONSE, srcPort: 52, dstPort: request!.header.srcPort });
    expect(accepted).toEqual([request!.header.srcPort]);

    rig.dev.connectFromHost(53, new FakeEnd(), () => accepted.push(-1), () => refused++);
    const [second] = rig.received();
    rig.send({ op: OP_RST, srcPort: 53, dstPort: second!.header.srcPort });
    expect(refused).toBe(1);
    expect(rig.dev.connectionCount()).toBe(1);
  });

  it('a refused host end resets the guest; packets for no connection get a reset, a reset gets none', () => {
    const rig = Rig.create();
    rig.send({ op: OP_REQUEST });
    rig.toHost[0]!.events.hostRefused();
    expect(rig.received().map((p) => p.header.op)).toEqual([OP_RST]);
    rig.send({ op: OP_RW, srcPort: 7, dstPort: 8 }, text('x'));
    const [rst] = rig.received();
    expect(rst!.header).toMatchObject({ op: OP_RST, srcPort: 8, dstPort: 7 });
    rig.send({ op: OP_RST, srcPort: 7, dstPort: 8 });
    expect(rig.received()).toEqual([]);
  });

  it('shutdown: the guest\'s SEND ends the host end, both flags are answered with a reset; the host\'s end and close reach the guest after its data', () => {
    const rig = Rig.create();
    const end = rig.connect();
    rig.send({ op: OP_SHUTDOWN, flags: SHUTDOWN_SEND });
    expect(end.ended).toBe(true);
    rig.toHost[0]!.events.hostData(text('last words'));
    rig.toHost[0]!.events.hostEnd();
    rig.toHost[0]!.events.hostClosed();
    const packets = rig.received();
    expect(packets.map((p) => p.header.op)).toEqual([OP_RW, OP_SHUTDOWN, OP_SHUTDOWN]);
    expect(str(packets[0]!.payload)).toBe('last words');
    expect(packets.slice(1).map((p) => p.header.flags)).toEqual([SHUTDOWN_SEND, SHUTDOWN_RCV | SHUTDOWN_SEND]);
    rig.send({ op: OP_SHUTDOWN, flags: SHUTDOWN_RCV | SHUTDOWN_SEND });
    expect(rig.received().map((p) => p.header.op)).toEqual([OP_RST]);
    expect(rig.dev.connectionCount()).toBe(0);
    expect(end.destroyed).toBe(false); // ended, not torn down: what the guest sent still goes out
  });

  describe('a hostile guest', () => {
    it('malformed packets are dropped and the device goes on: short header, a length beyond the payload or beyond 64 KiB, a foreign CID', () => {
      const rig = Rig.create();
      rig.send({ op: OP_REQUEST }, new Uint8Array(0), 20);
      rig.send({ op: OP_RW, len: 100 }, text('short'));
      rig.send({ op: OP_RW, len: MAX_PAYLOAD + 1 }, text('huge'));
      rig.send({ op: OP_REQUEST, srcCid: CID + 1 });
      rig.send({ op: OP_REQUEST, dstCid: 7 });
      expect(rig.dev.counters().dropped_packets).toBe(5);
      expect(rig.toHost).toEqual([]);
      expect(rig.received()).toEqual([]);
      rig.connect(); // still works
      expect(mmioRead32(rig.t, MMIO_STATUS) & STATUS_DEVICE_NEEDS_RESET).toBe(0);
    });

    it('a descriptor outside guest RAM marks the device NEEDS_RESET and drops its connections', () => {
      const rig = Rig.create();
      const end = rig.connect();
      rig.tx.addChain([{ addr: 0x10_0000_0000, len: HEADER_BYTES, writable: false }]);
      notify(rig.t, TXQ);
      expect(mmioRead32(rig.t, MMIO_STATUS) & STATUS_DEVICE_NEEDS_RESET).toBeTruthy();
      expect(rig.errors).toHaveLength(1);
      expect(end.destroyed).toBe(true);
    });

    it('a datagram-type packet is reset, a second REQUEST on a live connection resets it', () => {
      const rig = Rig.create();
      rig.send({ op: OP_REQUEST, type: 2 });
      expect(rig.received().map((p) => p.header.op)).toEqual([OP_RST]);
      const end = rig.connect();
      rig.send({ op: OP_REQUEST });
      expect(rig.received().map((p) => p.header.op)).toEqual([OP_RST]);
      expect(end.destroyed).toBe(true);
    });

    it('an rx buffer too small for a header comes back empty', () => {
      const rig = Rig.create(0);
      rig.rx.addChain([{ addr: RX_BUF, len: 8, writable: true }]);
      notify(rig.t, RXQ);
      rig.send({ op: OP_RW, srcPort: 1, dstPort: 2 }, text('x')); // answered with a reset that cannot fit
      expect(rig.rx.usedIdx()).toBe(1);
      expect(rig.rx.usedElem(0).len).toBe(0);
    });
  });

  it('host data beyond what the guest takes pauses the host end; it resumes as the guest reads', () => {
    const rig = Rig.create(0);
    rig.send({ op: OP_REQUEST });
    const end = new FakeEnd();
    rig.toHost[0]!.events.hostConnected(end);
    rig.toHost[0]!.events.hostData(new Uint8Array(256 * 1024));
    expect(end.paused).toBe(true);
    rig.postRx(64);
    expect(end.paused).toBe(false);
  });

  describe('restore', () => {
    it('a restored device posts TRANSPORT_RESET on its event queue when the VM resumes', () => {
      const rig = Rig.create();
      const ev = new Uint8Array(4).fill(0xee);
      rig.mem.write(0x3f0000, ev);
      rig.ev.addChain([{ addr: 0x3f0000, len: 4, writable: true }]);
      notify(rig.t, EVENTQ);
      expect(rig.ev.usedIdx()).toBe(0); // a running device has nothing to say
      const saved = rig.t.state();
      const restored = VirtioVsock.fromState({ guestCid: CID, connectToHost: () => {} }, saved.device);
      const t = VirtioMmioTransport.fromState({ device: restored, memory: rig.mem, interrupt: rig.irq, onDeviceError: () => {} }, saved);
      expect(t).toBeDefined();
      expect(rig.ev.usedIdx()).toBe(0); // paused until resume
      restored.unpause();
      expect(rig.ev.usedIdx()).toBe(1);
      expect(rig.ev.usedElem(0)).toEqual({ id: 0, len: 4 });
      expect([...rig.mem.slice(0x3f0000, 4)]).toEqual([0, 0, 0, 0]);
    });

    it('a saved CID other than the configured one, or no CID, is refused', () => {
      expect(() => VirtioVsock.fromState({ guestCid: 3, connectToHost: () => {} }, { guestCid: 4 })).toThrow(DeviceStateError);
      expect(() => VirtioVsock.fromState({ guestCid: 3, connectToHost: () => {} }, { guestCid: 2 })).toThrow(/not a guest CID/);
      expect(() => VirtioVsock.fromState({ guestCid: 3, connectToHost: () => {} }, null)).toThrow(DeviceStateError);
    });
  });
});
