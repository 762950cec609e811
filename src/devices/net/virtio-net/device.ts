/**
 * virtio-net (virtio 1.2 §5.1) with one queue pair: 0 receiveq (host → guest frames), 1 transmitq
 * (guest → host). Frames pass to and from a backend (a TAP, vmm/net-tap.ts) unchanged behind the
 * 12-byte virtio_net_hdr_v1 that VERSION_1 drivers and IFF_VNET_HDR taps share, so checksum and
 * segmentation offloads (CSUM, HOST_TSO*, GUEST_CSUM, GUEST_TSO*) cost the device nothing: the
 * host kernel finishes what the guest left undone, and the guest what the host did.
 *
 * Receive uses mergeable buffers when the driver takes them (MRG_RXBUF): a 64 KiB TSO frame
 * spreads over as many posted buffers as it needs, and num_buffers tells the driver how many.
 * A frame waits (and the backend is not read) while the guest has posted too few buffers; it
 * is never split over a half-filled set.
 *
 * The guest is hostile: a malformed chain marks the device NEEDS_RESET; a transmit chain too
 * short or too long for a frame is returned unused and counted as dropped. Neither stops the VMM.
 */
import {
  VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, bit, readConfigSpace, type VirtioActivation, type VirtioDevice,
} from '../../virtio/device.js';
import type { Descriptor } from '../../virtio/chain.js';
import type { Virtqueue } from '../../virtio/queue.js';
import { copyFromBuffers, copyIntoBuffers } from '../../virtio/buffers.js';
import { macBytes, parseVirtioNetState, type VirtioNetState } from './persist.js';

export const VIRTIO_ID_NET = 1;
export const RXQ = 0;
export const TXQ = 1;
const QUEUE_SIZE = 256;

/** Feature bits of §5.1.3. */
export const VIRTIO_NET_F_CSUM = 0n;
export const VIRTIO_NET_F_GUEST_CSUM = 1n;
export const VIRTIO_NET_F_MAC = 5n;
export const VIRTIO_NET_F_GUEST_TSO4 = 7n;
export const VIRTIO_NET_F_GUEST_TSO6 = 8n;
export const VIRTIO_NET_F_HOST_TSO4 = 11n;
export const VIRTIO_NET_F_HOST_TSO6 = 12n;
export const VIRTIO_NET_F_MRG_RXBUF = 15n;
export const VIRTIO_NET_F_STATUS = 16n;
const VIRTIO_NET_S_LINK_UP = 1;

/** struct virtio_net_hdr_v1: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers. */
export const NET_HDR_BYTES = 12;
const NUM_BUFFERS_OFFSET = 10;
/** The largest frame with its header: a 64 KiB TSO segment plus Ethernet and virtio-net headers (as Firecracker). */
export const MAX_FRAME_BYTES = 65562;
/** Chains handled per queue per turn of the event loop, so a busy guest cannot starve the API. */
const BATCH = QUEUE_SIZE;

/** Offloads the driver accepted on receive: the backend may hand over frames needing them. */
export interface NetOffloads {
  csum: boolean;
  tso4: boolean;
  tso6: boolean;
}

/** Where the device's frames come from and go (the host side of the link). */
export interface NetBackend {
  /** One waiting frame (header included) into `buf`: its length, or 0 when none waits. */
  read(buf: Uint8Array): number;
  /** Sends one frame (header included); false when the backend dropped it. */
  write(frame: Uint8Array): boolean;
  setOffloads(offloads: NetOffloads): void;
  /** Calls `onReadable` whenever frames may be waiting, until called with undefined. */
  watch(onReadable: (() => void) | undefined): void;
}

export interface VirtioNetOptions {
  /** The guest's MAC address, `xx:xx:xx:xx:xx:xx`. */
  mac: string;
  backend: NetBackend;
  onError?(message: string): void;
}

/** Bytes and frames each way (Ethernet frames, without the virtio-net header), as Cloud Hypervisor counts them. */
export type VirtioNetCounters = {
  rx_bytes: number;
  rx_frames: number;
  tx_bytes: number;
  tx_frames: number;
  /** Frames for the guest lost: too big for its buffers (without MRG_RXBUF), or read while it was being reset. */
  rx_dropped: number;
  /** Guest frames not sent: shorter than a header, longer than MAX_FRAME_BYTES, or refused by the backend. */
  tx_dropped: number;
};

export class VirtioNet implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_NET;
  readonly queueMaxSizes = [QUEUE_SIZE, QUEUE_SIZE];
  readonly deviceFeatures = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX) | bit(VIRTIO_F_INDIRECT_DESC)
    | bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_STATUS) | bit(VIRTIO_NET_F_MRG_RXBUF)
    | bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_HOST_TSO4) | bit(VIRTIO_NET_F_HOST_TSO6)
    | bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_TSO4) | bit(VIRTIO_NET_F_GUEST_TSO6);
  readonly mac: string;
  /** struct virtio_net_config: mac[6], status (u16); later fields need features not offered. */
  private readonly configSpace = new Uint8Array(8);
  private readonly backend: NetBackend;
  private activation: VirtioActivation | null = null;
  private paused = false;
  private watching = false;
  /** A frame read from the backend that waits for rx buffers (its length; 0: none). */
  private heldFrame = 0;
  private readonly rxFrame = new Uint8Array(MAX_FRAME_BYTES);
  private readonly txFrame = new Uint8Array(MAX_FRAME_BYTES);
  private rxAgain: ReturnType<typeof setImmediate> | undefined;
  private txAgain: ReturnType<typeof setImmediate> | undefined;
  private readonly stats: VirtioNetCounters = { rx_bytes: 0, rx_frames: 0, tx_bytes: 0, tx_frames: 0, rx_dropped: 0, tx_dropped: 0 };

  constructor(private readonly options: VirtioNetOptions) {
    const bytes = macBytes(options.mac);
    if (bytes === undefined) throw new TypeError(`virtio-net: ${options.mac} is not a MAC address`);
    this.mac = options.mac.toLowerCase();
    this.configSpace.set(bytes, 0);
    new DataView(this.configSpace.buffer).setUint16(6, VIRTIO_NET_S_LINK_UP, true);
    this.backend = options.backend;
  }

  counters(): VirtioNetCounters {
    return { ...this.stats };
  }

  /** Stops moving frames (VM pause and snapshot); frames arriving meanwhile wait in the backend. */
  pause(): void {
    this.paused = true;
    this.unwatch();
    this.cancelAgain();
  }

  unpause(): void {
    this.paused = false;
    this.transmit();
    this.receive();
  }

  /** Stops for good (VM shutdown). */
  close(): void {
    this.pause();
    this.activation = null;
  }

  readConfig(offset: number, data: Uint8Array): void {
    readConfigSpace(this.configSpace, offset, data);
  }

  writeConfig(): void {
    // The MAC is read-only in VERSION_1 (§5.1.4: the driver sets it through the control queue, not offered).
  }

  activate(activation: VirtioActivation): void {
    this.activation = activation;
    const acked = activation.ackedFeatures;
    const has = (f: bigint): boolean => (acked & bit(f)) !== 0n;
    try {
      this.backend.setOffloads({ csum: has(VIRTIO_NET_F_GUEST_CSUM), tso4: has(VIRTIO_NET_F_GUEST_TSO4), tso6: has(VIRTIO_NET_F_GUEST_TSO6) });
    } catch (e) {
      this.deviceError(activation, `the host side refused the offloads: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    this.transmit();
    this.receive();
  }

  queueNotify(index: number): void {
    if (index === TXQ) this.transmit();
    else if (index === RXQ) this.receive();
  }

  reset(): void {
    this.activation = null;
    this.unwatch();
    this.cancelAgain();
    if (this.heldFrame > 0) this.stats.rx_dropped++;
    this.heldFrame = 0;
  }

  state(): VirtioNetState {
    return { mac: this.mac };
  }

  /** The device as saved, paused (the VM resumes it); the MAC must be the configured one. */
  static fromState(options: VirtioNetOptions, s: unknown): VirtioNet {
    parseVirtioNetState(s, options.mac);
    const dev = new VirtioNet(options);
    dev.paused = true;
    return dev;
  }

  private queue(index: number): { act: VirtioActivation; q: Virtqueue } | null {
    const act = this.activation;
    if (act === null || this.paused) return null;
    const q = act.queues[index];
    return q === undefined || !q.ready ? null : { act, q };
  }

  /** Sends what the guest queued: every chain is one frame, header first. */
  private transmit(): void {
    this.txAgain = undefined;
    const target = this.queue(TXQ);
    if (target === null) return;
    const { act, q } = target;
    let sent = 0;
    try {
      for (;;) {
        const chain = q.popChain();
        if (chain === null) {
          if (q.enableNotification()) continue;
          break;
        }
        this.sendFrame(act, chain.collect());
        q.addUsed(chain.head, 0);
        if (++sent === BATCH) {
          this.txAgain = setImmediate(() => this.transmit());
          break;
        }
      }
    } catch (e) {
      this.deviceError(act, e instanceof Error ? e.message : String(e));
      return;
    }
    if (sent > 0) act.signalUsed(TXQ);
  }

  private sendFrame(act: VirtioActivation, descriptors: Descriptor[]): void {
    const readable = descriptors.filter((d) => !d.writable);
    const total = readable.reduce((n, d) => n + d.len, 0);
    if (total < NET_HDR_BYTES || total > MAX_FRAME_BYTES) {
      this.stats.tx_dropped++;
      return;
    }
    // One buffer (Linux puts the header in front of the data) goes out straight from guest memory.
    const frame = readable.length === 1
      ? act.memory.slice(readable[0]!.addr, total)
      : copyFromBuffers(act.memory, readable, 0, total, this.txFrame).subarray(0, total);
    if (this.backend.write(frame)) {
      this.stats.tx_frames++;
      this.stats.tx_bytes += total - NET_HDR_BYTES;
    } else {
      this.stats.tx_dropped++;
    }
  }

  /** Moves waiting frames from the backend into the guest's receive buffers. */
  private receive(): void {
    this.rxAgain = undefined;
    const target = this.queue(RXQ);
    if (target === null) return;
    const { act, q } = target;
    const mergeable = (act.ackedFeatures & bit(VIRTIO_NET_F_MRG_RXBUF)) !== 0n;
    let delivered = 0;
    let starved = false;
    try {
      for (;;) {
        if (this.heldFrame === 0) {
          this.heldFrame = this.backend.read(this.rxFrame);
          if (this.heldFrame === 0) break;
        }
        const frame = this.rxFrame.subarray(0, this.heldFrame);
        const outcome = mergeable ? this.deliverMerged(act, q, frame) : this.deliverWhole(act, q, frame);
        if (outcome === 'no-buffers') {
          // Chains the driver adds from now on must be announced, or the frame waits for ever;
          // some may have come in meanwhile (the ones already there were too few).
          const posted = q.pending();
          q.enableNotification();
          if (q.pending() > posted) continue;
          starved = true;
          break;
        }
        this.heldFrame = 0;
        if (outcome === 'delivered') {
          delivered++;
          this.stats.rx_frames++;
          this.stats.rx_bytes += frame.length - NET_HDR_BYTES;
        } else {
          this.stats.rx_dropped++;
        }
        if (delivered === BATCH) {
          this.rxAgain = setImmediate(() => this.receive());
          break;
        }
      }
    } catch (e) {
      this.deviceError(act, e instanceof Error ? e.message : String(e));
      return;
    }
    if (delivered > 0) act.signalUsed(RXQ);
    // Read the backend only while there are buffers to read into: the rx notification resumes it.
    if (starved || this.rxAgain !== undefined) this.unwatch();
    else this.watch();
  }

  /** The frame into one chain (no MRG_RXBUF): dropped when the chain is too small for it. */
  private deliverWhole(act: VirtioActivation, q: Virtqueue, frame: Uint8Array): 'delivered' | 'dropped' | 'no-buffers' {
    const chain = q.popChain();
    if (chain === null) return 'no-buffers';
    const writable = chain.collect().filter((d) => d.writable);
    if (capacity(writable) < frame.length) {
      q.undoPop(1);
      return 'dropped';
    }
    setNumBuffers(frame, 1);
    q.addUsed(chain.head, copyIntoBuffers(act.memory, writable, frame));
    return 'delivered';
  }

  /** The frame across as many chains as it needs (MRG_RXBUF), or none of them when too few are posted. */
  private deliverMerged(act: VirtioActivation, q: Virtqueue, frame: Uint8Array): 'delivered' | 'no-buffers' {
    const chains: { head: number; writable: Descriptor[]; room: number }[] = [];
    let room = 0;
    while (room < frame.length) {
      const chain = q.popChain();
      if (chain === null) {
        q.undoPop(chains.length);
        return 'no-buffers';
      }
      const writable = chain.collect().filter((d) => d.writable);
      const size = capacity(writable);
      // §5.1.6.3.1: each buffer is at least the header's size; a smaller one is a broken driver.
      if (size < NET_HDR_BYTES) throw new Error(`receive buffer chain at head ${chain.head} holds ${size} bytes, less than the ${NET_HDR_BYTES}-byte header`);
      chains.push({ head: chain.head, writable, room: size });
      room += size;
    }
    setNumBuffers(frame, chains.length);
    let at = 0;
    for (const c of chains) {
      const n = Math.min(c.room, frame.length - at);
      copyIntoBuffers(act.memory, c.writable, frame.subarray(at, at + n));
      q.addUsed(c.head, n);
      at += n;
    }
    return 'delivered';
  }

  private watch(): void {
    if (this.watching) return;
    this.watching = true;
    this.backend.watch(() => this.receive());
  }

  private unwatch(): void {
    if (!this.watching) return;
    this.watching = false;
    this.backend.watch(undefined);
  }

  private cancelAgain(): void {
    if (this.rxAgain !== undefined) clearImmediate(this.rxAgain);
    if (this.txAgain !== undefined) clearImmediate(this.txAgain);
    this.rxAgain = this.txAgain = undefined;
  }

  private deviceError(act: VirtioActivation, message: string): void {
    this.options.onError?.(`virtio-net: ${message}`);
    this.activation = null;
    this.unwatch();
    this.cancelAgain();
    act.deviceError(message);
  }
}

function capacity(buffers: readonly Descriptor[]): number {
  return buffers.reduce((n, d) => n + d.len, 0);
}

function setNumBuffers(frame: Uint8Array, n: number): void {
  frame[NUM_BUFFERS_OFFSET] = n & 0xff;
  frame[NUM_BUFFERS_OFFSET + 1] = n >> 8;
}
