/**
 * virtio-vsock (virtio 1.2 §5.10), stream sockets between the guest and its host, in the hybrid
 * mode of Firecracker and Cloud Hypervisor: the device terminates the guest's connections itself
 * and hands each to a host end (a Unix socket in the VMM, see vmm/vsock-unix.ts), so no kernel
 * vhost support is needed. Queues: 0 rx (device → driver packets), 1 tx (driver → device), 2 event.
 *
 * Each connection is keyed by (host port, guest port) and follows the spec's credit-based flow
 * control: the device never sends the guest more than the guest's advertised buffer has room for
 * (buf_alloc - (tx_cnt - fwd_cnt)), and polices the guest the same way against its own BUF_ALLOC,
 * counting a byte as forwarded once the host end has taken it. A guest that breaks the protocol on
 * one connection gets that connection reset; a malformed descriptor chain marks the device
 * NEEDS_RESET; neither stops the VMM.
 *
 * Nothing about connections goes into snapshots (their host ends cannot outlive the process): a
 * restored device posts VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, as Firecracker's does, so the guest
 * drops its connections at once and its agents reconnect.
 */
import { VIRTIO_F_VERSION_1, bit, readConfigSpace, type VirtioActivation, type VirtioDevice } from '../../virtio/device.js';
import type { Descriptor } from '../../virtio/chain.js';
import { copyFromBuffers, copyIntoBuffers } from '../../virtio/buffers.js';
import type { Virtqueue } from '../../virtio/queue.js';
import {
  EVENT_BYTES, EVENT_TRANSPORT_RESET, HEADER_BYTES, HOST_CID, OP_CREDIT_REQUEST, OP_CREDIT_UPDATE,
  OP_REQUEST, OP_RESPONSE, OP_RST, OP_RW, OP_SHUTDOWN, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM,
  parseHeader, writeHeader, type VsockHeader,
} from './packet.js';
import { parseVirtioVsockState, type VirtioVsockState } from './persist.js';

export const VIRTIO_ID_VSOCK = 19;
export const RXQ = 0;
export const TXQ = 1;
export const EVENTQ = 2;
const QUEUE_SIZE = 256;

/** Bytes of guest data per connection the device accepts before the host end has taken them. */
export const BUF_ALLOC = 256 * 1024;
/** Largest payload of one packet (Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE). */
export const MAX_PAYLOAD = 64 * 1024;
/** Host data held per connection for a guest that reads slowly; the host end is paused beyond it. */
const MAX_HOST_PENDING = 256 * 1024;
/** The device tells the guest about freed buffer space once this much was forwarded since it last did. */
const CREDIT_UPDATE_BYTES = BUF_ALLOC / 4;
/** Connections at once; a guest asking for more gets a reset. */
export const MAX_CONNECTIONS = 1024;
/** Control packets waiting for rx buffers (a guest that posts none cannot make the VMM grow). */
const MAX_CONTROL = 4096;
/** Host ports of host-initiated connections start here (as Firecracker's do). */
const FIRST_LOCAL_PORT = 1 << 30;

/** The host side of one connection (a Unix socket in the VMM). */
export interface VsockHostEnd {
  /** Guest bytes for the host; `done` once the host end has taken them. */
  write(bytes: Uint8Array, done: () => void): void;
  /** The guest sends no more: flush, then half-close. */
  end(): void;
  /** Tear the host end down at once. */
  destroy(): void;
  /** Stop / restart reading from the host (flow control toward the guest). */
  pause(): void;
  resume(): void;
}

/** What the host end reports about its connection. */
export interface VsockConnectionEvents {
  /** A guest-initiated connection's host end is open. */
  hostConnected(end: VsockHostEnd): void;
  /** A guest-initiated connection's host end could not be opened. */
  hostRefused(): void;
  hostData(bytes: Uint8Array): void;
  /** The host sends no more. */
  hostEnd(): void;
  /** The host end is gone. */
  hostClosed(): void;
}

export interface VirtioVsockOptions {
  guestCid: number;
  /** A guest connects to host port `port`: open a host end and report through `events`. */
  connectToHost(port: number, events: VsockConnectionEvents): void;
  onError?(message: string): void;
}

export type VirtioVsockCounters = {
  /** Guest → host payload bytes. */
  tx_bytes: number;
  /** Host → guest payload bytes. */
  rx_bytes: number;
  connections: number;
  resets: number;
  dropped_packets: number;
};

type ConnState = 'host-connecting' | 'guest-requested' | 'established';

class Connection {
  state: ConnState;
  end: VsockHostEnd | undefined;
  dead = false;
  /** The guest's credit: its buffer, what it forwarded, what the device sent it. */
  peerBufAlloc = 0;
  peerFwdCnt = 0;
  txCnt = 0;
  /** The device's credit toward the guest: what it received, forwarded, and last reported. */
  rxCnt = 0;
  fwdCnt = 0;
  reportedFwdCnt = 0;
  creditUpdateQueued = false;
  /** Host bytes waiting for the guest's rx buffers and credit. */
  pending: Uint8Array[] = [];
  pendingBytes = 0;
  hostPaused = false;
  hostEnded = false;
  hostClosed = false;
  shutdownSent = 0;
  guestShutdown = 0;
  accepted: ((localPort: number) => void) | undefined;
  refused: (() => void) | undefined;

  constructor(readonly localPort: number, readonly peerPort: number, state: ConnState) {
    this.state = state;
  }

  get key(): string {
    return connKey(this.localPort, this.peerPort);
  }

  /** Bytes the guest has room for. */
  peerCredit(): number {
    return Math.max(0, this.peerBufAlloc - ((this.txCnt - this.peerFwdCnt) >>> 0));
  }
}

const connKey = (localPort: number, peerPort: number): string => `${localPort}:${peerPort}`;

interface ControlPacket {
  op: number;
  flags: number;
  localPort: number;
  peerPort: number;
  /** Credit fields come from the connection when the packet is written (0 for a stray reset). */
  conn: Connection | undefined;
}

export class VirtioVsock implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_VSOCK;
  readonly queueMaxSizes = [QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE];
  readonly deviceFeatures = bit(VIRTIO_F_VERSION_1);
  readonly guestCid: number;
  /** guest_cid, le64 (§5.10.4). */
  private readonly configSpace = new Uint8Array(8);
  private activation: VirtioActivation | null = null;
  private paused = false;
  private resetPending = false;
  private readonly conns = new Map<string, Connection>();
  private readonly control: ControlPacket[] = [];
  private nextLocalPort = FIRST_LOCAL_PORT;
  private readonly stats: VirtioVsockCounters = { tx_bytes: 0, rx_bytes: 0, connections: 0, resets: 0, dropped_packets: 0 };

  constructor(private readonly options: VirtioVsockOptions) {
    this.guestCid = options.guestCid;
    new DataView(this.configSpace.buffer).setUint32(0, this.guestCid, true);
  }

  counters(): VirtioVsockCounters {
    return { ...this.stats };
  }

  /** Open connections (host ends included). */
  connectionCount(): number {
    return this.conns.size;
  }

  /**
   * The host connects to guest port `guestPort` through `end`: the guest gets a REQUEST, and
   * `accepted` (with the host port the device chose) or `refused` follows. Refused at once when
   * the guest's driver is not running. Returns the events the host end reports through.
   */
  connectFromHost(guestPort: number, end: VsockHostEnd, accepted: (localPort: number) => void, refused: () => void): VsockConnectionEvents | undefined {
    if (this.activation === null || this.conns.size >= MAX_CONNECTIONS) {
      refused();
      return undefined;
    }
    let localPort = this.nextLocalPort;
    while (this.conns.has(connKey(localPort, guestPort))) localPort = localPort >= 0xffff_fffe ? FIRST_LOCAL_PORT : localPort + 1;
    this.nextLocalPort = localPort >= 0xffff_fffe ? FIRST_LOCAL_PORT : localPort + 1;
    const conn = new Connection(localPort, guestPort, 'guest-requested');
    conn.end = end;
    conn.accepted = accepted;
    conn.refused = refused;
    this.conns.set(conn.key, conn);
    this.stats.connections++;
    this.queueControl(conn, OP_REQUEST);
    this.fillRx();
    return this.eventsFor(conn);
  }

  /** Stops using the queues (VM pause and snapshot); host data waits, bounded. */
  pause(): void {
    this.paused = true;
  }

  unpause(): void {
    this.paused = false;
    this.processAll();
  }

  /** Drops every connection (VM shutdown). */
  close(): void {
    for (const c of [...this.conns.values()]) this.remove(c, true);
  }

  // ---- VirtioDevice ----------------------------------------------------------------------

  readConfig(offset: number, data: Uint8Array): void {
    readConfigSpace(this.configSpace, offset, data);
  }

  writeConfig(): void {
    // The configuration space is read-only.
  }

  activate(activation: VirtioActivation): void {
    this.activation = activation;
    this.processAll();
  }

  queueNotify(index: number): void {
    if (index === TXQ) this.transmit();
    else if (index === RXQ) this.fillRx();
    else if (index === EVENTQ) this.serveEvents();
  }

  reset(): void {
    this.activation = null;
    this.control.length = 0;
    for (const c of [...this.conns.values()]) this.remove(c, true);
  }

  state(): VirtioVsockState {
    return { guestCid: this.guestCid };
  }

  /** The device as saved, paused, with a transport reset to announce (see the file comment). */
  static fromState(options: VirtioVsockOptions, s: unknown): VirtioVsock {
    const state = parseVirtioVsockState(s, options.guestCid);
    const dev = new VirtioVsock({ ...options, guestCid: state.guestCid });
    dev.paused = true;
    dev.resetPending = true;
    return dev;
  }

  // ---- queues -------------------------------------------------------------------------------

  private processAll(): void {
    this.serveEvents();
    this.transmit();
    this.fillRx();
  }

  private queue(index: number): { act: VirtioActivation; q: Virtqueue } | null {
    const act = this.activation;
    if (act === null || this.paused) return null;
    const q = act.queues[index];
    return q === undefined || !q.ready ? null : { act, q };
  }

  private serveEvents(): void {
    if (!this.resetPending) return;
    const target = this.queue(EVENTQ);
    if (target === null) return;
    const { act, q } = target;
    try {
      const chain = q.popChain();
      if (chain === null) return; // posted later: queueNotify(EVENTQ) comes back here
      const event = new Uint8Array(EVENT_BYTES);
      new DataView(event.buffer).setUint32(0, EVENT_TRANSPORT_RESET, true);
      const written = copyIntoBuffers(act.memory, chain.collect(), event);
      q.addUsed(chain.head, written);
      this.resetPending = false;
      act.signalUsed(EVENTQ);
    } catch (e) {
      this.deviceError(act, e);
    }
  }

  /** Takes every packet the guest sent and acts on it. */
  private transmit(): void {
    const target = this.queue(TXQ);
    if (target === null) return;
    const { act, q } = target;
    const received: { header: VsockHeader; payload: Uint8Array }[] = [];
    try {
      let used = false;
      for (let chain = q.popChain(); chain !== null; chain = q.popChain()) {
        const readable = chain.collect().filter((d) => !d.writable);
        q.addUsed(chain.head, 0);
        used = true;
        const packet = gather(act, readable);
        if (packet === undefined) {
          this.stats.dropped_packets++;
          continue;
        }
        received.push(packet);
      }
      if (used) act.signalUsed(TXQ);
    } catch (e) {
      this.deviceError(act, e);
      return;
    }
    for (const p of received) this.onPacket(p.header, p.payload);
    this.fillRx();
  }

  private onPacket(h: VsockHeader, payload: Uint8Array): void {
    if (h.dstCid !== HOST_CID || h.srcCid !== this.guestCid) {
      this.stats.dropped_packets++;
      return;
    }
    if (h.type !== TYPE_STREAM) {
      this.replyReset(h);
      return;
    }
    const conn = this.conns.get(connKey(h.dstPort, h.srcPort));
    if (conn === undefined) {
      if (h.op === OP_REQUEST) this.openToHost(h);
      else this.replyReset(h);
      return;
    }
    conn.peerBufAlloc = h.bufAlloc;
    conn.peerFwdCnt = h.fwdCnt;
    switch (h.op) {
      case OP_RESPONSE:
        if (conn.state !== 'guest-requested') return this.resetConnection(conn);
        conn.state = 'established';
        conn.accepted?.(conn.localPort);
        return;
      case OP_RW:
        return this.fromGuest(conn, payload);
      case OP_CREDIT_UPDATE:
        return; // the credit fields were all it carried
      case OP_CREDIT_REQUEST:
        this.queueControl(conn, OP_CREDIT_UPDATE);
        return;
      case OP_SHUTDOWN:
        conn.guestShutdown |= h.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
        if (h.flags & SHUTDOWN_SEND) conn.end?.end();
        if (h.flags & SHUTDOWN_RCV) this.dropPending(conn);
        // Both directions shut: the spec has the other side confirm with a reset. The host end
        // was ended above, so what the guest sent is still delivered.
        if (conn.guestShutdown === (SHUTDOWN_RCV | SHUTDOWN_SEND)) {
          this.queueControl(conn, OP_RST);
          this.remove(conn, false);
        }
        return;
      case OP_RST:
        if (conn.state === 'guest-requested') conn.refused?.();
        this.remove(conn, true);
        return;
      default: // a second REQUEST on a live connection, or an unknown operation
        this.resetConnection(conn);
    }
  }

  /** A guest REQUEST for host port `h.dstPort`: the host end is opened, RESPONSE or RST follows. */
  private openToHost(h: VsockHeader): void {
    if (this.conns.size >= MAX_CONNECTIONS) {
      this.replyReset(h);
      return;
    }
    const conn = new Connection(h.dstPort, h.srcPort, 'host-connecting');
    conn.peerBufAlloc = h.bufAlloc;
    conn.peerFwdCnt = h.fwdCnt;
    this.conns.set(conn.key, conn);
    this.stats.connections++;
    this.options.connectToHost(h.dstPort, this.eventsFor(conn));
  }

  private fromGuest(conn: Connection, payload: Uint8Array): void {
    // Data on a connection that is not open, after the guest said it sends no more, toward a host
    // end that is gone, or beyond the credit the device gave: the guest broke the protocol.
    const unacked = (conn.rxCnt + payload.length - conn.fwdCnt) >>> 0;
    if (conn.state !== 'established' || conn.guestShutdown & SHUTDOWN_SEND || conn.hostClosed || unacked > BUF_ALLOC) {
      this.resetConnection(conn);
      return;
    }
    if (payload.length === 0) return;
    conn.rxCnt = (conn.rxCnt + payload.length) >>> 0;
    this.stats.tx_bytes += payload.length;
    conn.end!.write(payload, () => this.forwarded(conn, payload.length));
  }

  /** The host end took `n` guest bytes: the guest may send that much more. */
  private forwarded(conn: Connection, n: number): void {
    conn.fwdCnt = (conn.fwdCnt + n) >>> 0;
    if (conn.dead || conn.creditUpdateQueued) return;
    if (((conn.fwdCnt - conn.reportedFwdCnt) >>> 0) >= CREDIT_UPDATE_BYTES) {
      this.queueControl(conn, OP_CREDIT_UPDATE);
      this.fillRx();
    }
  }

  private eventsFor(conn: Connection): VsockConnectionEvents {
    return {
      hostConnected: (end) => {
        if (conn.dead || conn.state !== 'host-connecting') {
          end.destroy();
          return;
        }
        conn.end = end;
        conn.state = 'established';
        this.queueControl(conn, OP_RESPONSE);
        this.fillRx();
      },
      hostRefused: () => {
        if (conn.dead) return;
        this.queueControl(conn, OP_RST);
        this.remove(conn, false);
        this.fillRx();
      },
      hostData: (bytes) => {
        if (conn.dead || conn.guestShutdown & SHUTDOWN_RCV || bytes.length === 0) return;
        conn.pending.push(Uint8Array.from(bytes));
        conn.pendingBytes += bytes.length;
        if (conn.pendingBytes >= MAX_HOST_PENDING && !conn.hostPaused) {
          conn.hostPaused = true;
          conn.end?.pause();
        }
        this.fillRx();
      },
      hostEnd: () => {
        if (conn.dead) return;
        conn.hostEnded = true;
        this.fillRx();
      },
      hostClosed: () => {
        if (conn.dead) return;
        conn.hostClosed = true;
        if (conn.state !== 'established') {
          // The host gave up before the guest answered (or before its end opened).
          this.queueControl(conn, OP_RST);
          this.remove(conn, false);
        }
        this.fillRx();
      },
    };
  }

  /** Resets one connection: RST to the guest, the host end torn down. */
  private resetConnection(conn: Connection): void {
    this.queueControl(conn, OP_RST);
    if (conn.state === 'guest-requested') conn.refused?.();
    this.remove(conn, true);
  }

  private replyReset(h: VsockHeader): void {
    if (h.op === OP_RST) return; // never answer a reset with a reset
    if (this.control.length >= MAX_CONTROL) return;
    this.control.push({ op: OP_RST, flags: 0, localPort: h.dstPort, peerPort: h.srcPort, conn: undefined });
  }

  private queueControl(conn: Connection, op: number, flags = 0): void {
    if (op === OP_CREDIT_UPDATE) conn.creditUpdateQueued = true;
    // A connection's own packets are never dropped: at most a few are queued per connection.
    this.control.push({ op, flags, localPort: conn.localPort, peerPort: conn.peerPort, conn });
  }

  private remove(conn: Connection, destroy: boolean): void {
    if (conn.dead) return;
    conn.dead = true;
    this.conns.delete(conn.key);
    this.dropPending(conn);
    if (destroy) conn.end?.destroy();
  }

  private dropPending(conn: Connection): void {
    conn.pending = [];
    conn.pendingBytes = 0;
  }

  /**
   * Queues the SHUTDOWN a connection owes the guest once its host data has all gone out: SEND when
   * the host ended its side, both flags when the host end is gone (the guest then resets it).
   */
  private queueShutdowns(): void {
    for (const conn of this.conns.values()) {
      if (conn.state !== 'established' || conn.pendingBytes > 0) continue;
      const flags = (conn.hostEnded || conn.hostClosed ? SHUTDOWN_SEND : 0) | (conn.hostClosed ? SHUTDOWN_RCV : 0);
      if ((flags & ~conn.shutdownSent) === 0) continue;
      conn.shutdownSent = flags;
      this.queueControl(conn, OP_SHUTDOWN, flags);
    }
  }

  /** A connection with host data the guest has credit for, round-robin. */
  private nextSender(): Connection | undefined {
    for (const conn of this.conns.values()) {
      if (conn.state === 'established' && conn.pendingBytes > 0 && conn.peerCredit() > 0) {
        // Move it to the back so that connections take turns.
        this.conns.delete(conn.key);
        this.conns.set(conn.key, conn);
        return conn;
      }
    }
    return undefined;
  }

  /** Fills the guest's rx buffers: control packets first, then data. */
  private fillRx(): void {
    this.queueShutdowns();
    const target = this.queue(RXQ);
    if (target === null) return;
    const { act, q } = target;
    try {
      let used = false;
      for (;;) {
        const control = this.control.length > 0;
        const sender = control ? undefined : this.nextSender();
        if (!control && sender === undefined) break;
        const chain = q.popChain();
        if (chain === null) break;
        const writable = chain.collect().filter((d) => d.writable);
        const room = writable.reduce((n, d) => n + d.len, 0);
        used = true;
        if (room < HEADER_BYTES) {
          // No room for even a header: the driver gets the buffer back empty and drops it.
          q.addUsed(chain.head, 0);
          continue;
        }
        const packet = control ? this.controlPacket(this.control.shift()!) : this.dataPacket(sender!, room - HEADER_BYTES);
        q.addUsed(chain.head, copyIntoBuffers(act.memory, writable, packet));
        if (!control) this.queueShutdowns();
      }
      if (used) act.signalUsed(RXQ);
    } catch (e) {
      this.deviceError(act, e);
    }
  }

  private header(op: number, localPort: number, peerPort: number, len: number, flags: number, conn: Connection | undefined): Uint8Array {
    const bytes = new Uint8Array(HEADER_BYTES + len);
    if (conn !== undefined) {
      conn.reportedFwdCnt = conn.fwdCnt;
      if (op === OP_CREDIT_UPDATE) conn.creditUpdateQueued = false;
    }
    writeHeader({
      srcCid: HOST_CID, dstCid: this.guestCid, srcPort: localPort, dstPort: peerPort, len, type: TYPE_STREAM, op, flags,
      bufAlloc: conn === undefined ? 0 : BUF_ALLOC, fwdCnt: conn?.fwdCnt ?? 0,
    }, bytes);
    return bytes;
  }

  private controlPacket(p: ControlPacket): Uint8Array {
    if (p.op === OP_RST) this.stats.resets++;
    return this.header(p.op, p.localPort, p.peerPort, 0, p.flags, p.conn);
  }

  private dataPacket(conn: Connection, room: number): Uint8Array {
    const n = Math.min(room, MAX_PAYLOAD, conn.peerCredit(), conn.pendingBytes);
    const bytes = this.header(OP_RW, conn.localPort, conn.peerPort, n, 0, conn);
    let at = HEADER_BYTES;
    while (at < bytes.length) {
      const head = conn.pending[0]!;
      const take = Math.min(head.length, bytes.length - at);
      bytes.set(head.subarray(0, take), at);
      at += take;
      if (take === head.length) conn.pending.shift();
      else conn.pending[0] = head.subarray(take);
    }
    conn.pendingBytes -= n;
    conn.txCnt = (conn.txCnt + n) >>> 0;
    this.stats.rx_bytes += n;
    if (conn.hostPaused && conn.pendingBytes < MAX_HOST_PENDING / 2) {
      conn.hostPaused = false;
      conn.end?.resume();
    }
    return bytes;
  }

  private deviceError(act: VirtioActivation, e: unknown): void {
    const msg = e instanceof Error ? e.message : String(e);
    this.options.onError?.(`virtio-vsock: ${msg}`);
    this.activation = null;
    for (const c of [...this.conns.values()]) this.remove(c, true);
    this.control.length = 0;
    act.deviceError(msg);
  }
}

/**
 * The header and payload of one tx packet from its device-readable buffers, or undefined when
 * they hold less than a header, the header claims more than MAX_PAYLOAD, or fewer bytes follow
 * it than it claims.
 */
function gather(act: VirtioActivation, readable: Descriptor[]): { header: VsockHeader; payload: Uint8Array } | undefined {
  const total = readable.reduce((n, d) => n + d.len, 0);
  if (total < HEADER_BYTES) return undefined;
  const head = copyFromBuffers(act.memory, readable, 0, HEADER_BYTES);
  const header = parseHeader(head);
  if (header.len > MAX_PAYLOAD || HEADER_BYTES + header.len > total) return undefined;
  return { header, payload: copyFromBuffers(act.memory, readable, HEADER_BYTES, header.len) };
}
