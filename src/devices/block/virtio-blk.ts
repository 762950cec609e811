import { BlockError, type BlockBackend } from '../../block/backend.js';
import { MAX_WRITEV_PARTS } from '../../block/host-file.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import { DeviceStateError } from '../errors.js';
import type { Descriptor } from '../virtio/chain.js';
import type { Virtqueue } from '../virtio/queue.js';
import {
  VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, bit,
  type VirtioActivation, type VirtioDevice,
} from '../virtio/device.js';

/** virtio-blk (virtio 1.x §5.2). */
export const VIRTIO_ID_BLOCK = 2;

export const VIRTIO_BLK_F_SIZE_MAX = 1n;
export const VIRTIO_BLK_F_SEG_MAX = 2n;
export const VIRTIO_BLK_F_RO = 5n;
export const VIRTIO_BLK_F_BLK_SIZE = 6n;
export const VIRTIO_BLK_F_FLUSH = 9n;
export const VIRTIO_BLK_F_DISCARD = 13n;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14n;

export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;

export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;

export const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;

export const SECTOR_SIZE = 512;
export const VIRTIO_BLK_ID_BYTES = 20;
export const REQUEST_HEADER_SIZE = 16;
export const DISCARD_SEGMENT_SIZE = 16;
export const BLK_CONFIG_SIZE = 60;

export const DEFAULT_QUEUE_SIZE = 256;
const SIZE_MAX = 1 << 20; // largest single data segment the driver should build
/** Per segment: keeps one range below 2 GiB so byte counts stay small integers. */
const MAX_DISCARD_SECTORS = 0x3fffff;
const MAX_DISCARD_SEG = 32;
const BLOCK_SIZE = 512;

export interface VirtioBlkCounters {
  read_ops: number;
  read_bytes: number;
  write_ops: number;
  write_bytes: number;
  flush_ops: number;
  discard_ops: number;
  write_zeroes_ops: number;
  errors: number;
}

export interface VirtioBlkState {
  capacitySectors: number;
  readOnly: boolean;
  serial: string;
  queueSize: number;
}

export interface VirtioBlkOptions {
  /** Up to 20 ASCII bytes returned by GET_ID (Linux shows it as /sys/block/vdX/serial). */
  serial?: string;
  queueSize?: number;
  /** Device errors (NEEDS_RESET) and backend failures, for the VMM's log. */
  onError?: (message: string) => void;
}

/** A request's outcome: the status byte and how many bytes went into device-writable buffers. */
interface Outcome { status: number; written: number }

/** A validated guest write, held until the end of the queue pass so neighbours can merge. */
class QueuedWrite {
  head = 0;
  statusAddr = 0;
  constructor(readonly offset: number, readonly total: number, readonly parts: Uint8Array[]) {}
}

/** Merged writes stay below these (QEMU's virtio-blk merges the same way, up to IOV_MAX). */
const MAX_MERGED_PARTS = MAX_WRITEV_PARTS;
const MAX_MERGED_BYTES = 32 * 1024 * 1024;

const statusOnly = (status: number): Outcome => ({ status, written: 0 });

/**
 * The virtio block device over a BlockBackend. Requests are validated in full before the backend
 * sees them (a malformed request completes with IOERR/UNSUPP and never touches the disk); valid
 * ones run asynchronously, several at a time, and complete into the used ring in completion
 * order. A broken queue (see Virtqueue / DescriptorChain) stops the device with DEVICE_NEEDS_RESET.
 * Nothing the guest does makes a method of this class throw.
 */
export class VirtioBlk implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_BLOCK;
  readonly queueMaxSizes: readonly number[];
  readonly deviceFeatures: bigint;
  readonly serial: string;
  readonly capacitySectors: number;

  private readonly config: Uint8Array;
  private activation: VirtioActivation | null = null;
  /** Bumped by reset: completions of an older generation are not written to the guest. */
  private generation = 0;
  private inFlight = 0;
  private paused = false;
  private drainWaiters: Array<() => void> = [];
  private readonly stats: VirtioBlkCounters = {
    read_ops: 0, read_bytes: 0, write_ops: 0, write_bytes: 0, flush_ops: 0, discard_ops: 0, write_zeroes_ops: 0, errors: 0,
  };

  constructor(private backend: BlockBackend, private readonly options: VirtioBlkOptions = {}) {
    const queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE;
    if (!Number.isInteger(queueSize) || queueSize < 4 || queueSize > 32768 || (queueSize & (queueSize - 1)) !== 0) {
      throw new RangeError(`virtio-blk queue size ${queueSize} is not a power of two in [4, 32768]`);
    }
    this.queueMaxSizes = [queueSize];
    this.serial = options.serial ?? '';
    if (!/^[\x20-\x7e]{0,20}$/.test(this.serial)) throw new RangeError(`virtio-blk serial "${this.serial}" must be at most 20 printable ASCII characters`);
    this.capacitySectors = Math.floor(backend.size / SECTOR_SIZE);
    let f = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX) | bit(VIRTIO_F_INDIRECT_DESC)
      | bit(VIRTIO_BLK_F_SIZE_MAX) | bit(VIRTIO_BLK_F_SEG_MAX) | bit(VIRTIO_BLK_F_BLK_SIZE) | bit(VIRTIO_BLK_F_FLUSH);
    if (backend.readOnly) f |= bit(VIRTIO_BLK_F_RO);
    else f |= bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES);
    this.deviceFeatures = f;
    this.config = this.buildConfig(queueSize);
  }

  private buildConfig(queueSize: number): Uint8Array {
    const b = new Uint8Array(BLK_CONFIG_SIZE);
    const v = new DataView(b.buffer);
    v.setBigUint64(0, BigInt(this.capacitySectors), true);
    v.setUint32(8, SIZE_MAX, true);
    v.setUint32(12, queueSize - 2, true); // seg_max: header and status take two descriptors
    v.setUint32(20, BLOCK_SIZE, true);
    v.setUint32(36, MAX_DISCARD_SECTORS, true);
    v.setUint32(40, MAX_DISCARD_SEG, true);
    v.setUint32(44, 1, true); // discard_sector_alignment, in sectors
    v.setUint32(48, MAX_DISCARD_SECTORS, true);
    v.setUint32(52, MAX_DISCARD_SEG, true);
    v.setUint8(56, 1); // write_zeroes_may_unmap
    return b;
  }

  counters(): VirtioBlkCounters {
    return { ...this.stats };
  }

  // ---- VirtioDevice ----------------------------------------------------------------------

  readConfig(offset: number, data: Uint8Array): void {
    data.fill(0);
    for (let i = 0; i < data.length; i++) {
      const at = offset + i;
      if (at >= 0 && at < this.config.length) data[i] = this.config[at]!;
    }
  }

  writeConfig(): void {
    // Nothing is writable: CONFIG_WCE (writeback toggle) is not offered.
  }

  activate(activation: VirtioActivation): void {
    this.activation = activation;
    // Chains made available before a snapshot (or before a drain) are picked up now.
    this.processAll();
  }

  queueNotify(index: number): void {
    this.processQueue(index);
  }

  reset(): void {
    this.activation = null;
    this.generation++;
  }

  state(): VirtioBlkState {
    return { capacitySectors: this.capacitySectors, readOnly: this.backend.readOnly, serial: this.serial, queueSize: this.queueMaxSizes[0]! };
  }

  /** Rebuilds the device over `backend`, refusing a disk that is not the one it was saved with. */
  static fromState(args: { backend: BlockBackend; onError?: (message: string) => void }, s: VirtioBlkState): VirtioBlk {
    const bad = (m: string): never => { throw new DeviceStateError('virtio-blk', m); };
    if (typeof s !== 'object' || s === null) bad('state is not an object');
    if (typeof s.serial !== 'string' || typeof s.readOnly !== 'boolean' || typeof s.queueSize !== 'number' || typeof s.capacitySectors !== 'number') bad('state fields have wrong types');
    const dev = (() => {
      try {
        return new VirtioBlk(args.backend, { serial: s.serial, queueSize: s.queueSize, ...(args.onError ? { onError: args.onError } : {}) });
      } catch (e) {
        return bad(e instanceof Error ? e.message : String(e));
      }
    })();
    if (dev.capacitySectors !== s.capacitySectors) bad(`disk has ${dev.capacitySectors} sectors but the snapshot expects ${s.capacitySectors}`);
    if (args.backend.readOnly !== s.readOnly) bad(`disk is ${args.backend.readOnly ? 'read-only' : 'writable'} but was ${s.readOnly ? 'read-only' : 'writable'} when saved`);
    return dev;
  }

  // ---- pause / drain ---------------------------------------------------------------------

  /** Stops taking new requests and resolves once none is in flight (for pause and snapshot). */
  drain(): Promise<void> {
    this.paused = true;
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Takes requests again, including any the driver queued while the device was drained. */
  resumeProcessing(): void {
    this.paused = false;
    this.processAll();
  }

  get requestsInFlight(): number {
    return this.inFlight;
  }

  /**
   * Puts another image under the device (a live external snapshot or a block-commit pivot). Only
   * between drain() and resumeProcessing(), so no request straddles two images; the new image
   * must look the same to the driver (size, writability), since the guest is not told.
   */
  setBackend(next: BlockBackend): void {
    if (!this.paused || this.inFlight !== 0) throw new BlockError('virtio-blk: cannot switch images while requests may run (drain() first)');
    if (Math.floor(next.size / SECTOR_SIZE) !== this.capacitySectors) {
      throw new BlockError(`virtio-blk: the new image has ${Math.floor(next.size / SECTOR_SIZE)} sectors, the guest sees ${this.capacitySectors}`);
    }
    if (next.readOnly !== this.backend.readOnly) throw new BlockError(`virtio-blk: the new image is ${next.readOnly ? 'read-only' : 'writable'}, the guest sees it ${this.backend.readOnly ? 'read-only' : 'writable'}`);
    this.backend = next;
  }

  // ---- request processing -------------------------------------------------------------------

  private processAll(): void {
    for (let i = 0; i < this.queueMaxSizes.length; i++) this.processQueue(i);
  }

  private processQueue(index: number): void {
    const act = this.activation;
    if (act === null || this.paused) return;
    const q = act.queues[index];
    if (q === undefined || !q.ready) return;
    try {
      for (;;) {
        const writes: QueuedWrite[] = [];
        for (let chain = q.popChain(); chain !== null; chain = q.popChain()) {
          this.startRequest(act, index, q, chain.head, chain.collect(), writes);
          if (this.activation !== act) return; // a completion failed and reset the device
        }
        this.startWrites(act, index, q, writes);
        if (!q.enableNotification()) break;
      }
    } catch (e) {
      this.stats.errors++;
      this.deviceError(act, e);
    }
  }

  private deviceError(act: VirtioActivation, e: unknown): void {
    const msg = e instanceof Error ? e.message : String(e);
    this.options.onError?.(`virtio-blk: ${msg}`);
    act.deviceError(msg);
  }

  private startRequest(act: VirtioActivation, qi: number, q: Virtqueue, head: number, descs: Descriptor[], writes: QueuedWrite[]): void {
    const status = descs[descs.length - 1];
    // Without a device-writable 1-byte status descriptor at the end there is nowhere to report:
    // hand the chain back untouched.
    if (descs.length < 2 || status === undefined || !status.writable || status.len !== 1) {
      this.stats.errors++;
      this.complete(act, qi, q, head, null, statusOnly(VIRTIO_BLK_S_IOERR), this.generation);
      return;
    }
    const parsed = this.parse(act.memory, act.ackedFeatures, descs.slice(0, -1));
    if (typeof parsed === 'number') {
      this.stats.errors++;
      this.complete(act, qi, q, head, status.addr, statusOnly(parsed), this.generation);
      return;
    }
    if (parsed instanceof QueuedWrite) {
      parsed.head = head;
      parsed.statusAddr = status.addr;
      writes.push(parsed);
      return;
    }
    // Writes queued before this request start before it, as the guest ordered them.
    this.startWrites(act, qi, q, writes.splice(0));
    this.track(act, qi, q, head, status.addr, parsed());
  }

  /**
   * Starts the writes of one queue pass. Writes that continue each other on the disk go to the
   * backend as one request when it can take several buffers at once: a driver streaming 64 KiB
   * requests then costs one host write per pass instead of one per request.
   */
  private startWrites(act: VirtioActivation, qi: number, q: Virtqueue, writes: QueuedWrite[]): void {
    if (writes.length === 0) return;
    const backend = this.backend;
    if (writes.length === 1 || backend.writev === undefined) {
      for (const w of writes) this.track(act, qi, q, w.head, w.statusAddr, this.runWrite(w, () => this.writeOne(w)));
      return;
    }
    // Stable: writes to the same place keep the guest's order.
    writes.sort((a, b) => a.offset - b.offset);
    let group: QueuedWrite[] = [];
    let parts = 0;
    let bytes = 0;
    const startGroup = (): void => {
      if (group.length === 0) return;
      const members = group;
      const io = members.length === 1 ? this.writeOne(members[0]!) : backend.writev!(members[0]!.offset, members.flatMap((w) => w.parts));
      for (const w of members) this.track(act, qi, q, w.head, w.statusAddr, this.runWrite(w, () => io));
      group = [];
      parts = 0;
      bytes = 0;
    };
    for (const w of writes) {
      const last = group.at(-1);
      if (last !== undefined && (last.offset + last.total !== w.offset || parts + w.parts.length > MAX_MERGED_PARTS || bytes + w.total > MAX_MERGED_BYTES)) startGroup();
      group.push(w);
      parts += w.parts.length;
      bytes += w.total;
    }
    startGroup();
  }

  private async writeOne(w: QueuedWrite): Promise<void> {
    let at = w.offset;
    for (const part of w.parts) { await this.backend.write(at, part); at += part.byteLength; }
  }

  private async runWrite(w: QueuedWrite, io: () => Promise<void>): Promise<Outcome> {
    await io();
    this.stats.write_ops++;
    this.stats.write_bytes += w.total;
    return statusOnly(VIRTIO_BLK_S_OK);
  }

  /** Completes the request when `io` settles; a failure is the request's IOERR, not the VMM's. */
  private track(act: VirtioActivation, qi: number, q: Virtqueue, head: number, statusAddr: number, io: Promise<Outcome>): void {
    const generation = this.generation;
    this.inFlight++;
    io.then(
      (outcome) => {
        if (outcome.status !== VIRTIO_BLK_S_OK) this.stats.errors++;
        return outcome;
      },
      (e: unknown) => {
        this.stats.errors++;
        this.options.onError?.(`virtio-blk: ${e instanceof Error ? e.message : String(e)}`);
        return statusOnly(VIRTIO_BLK_S_IOERR);
      },
    ).then((outcome) => {
      this.inFlight--;
      this.complete(act, qi, q, head, statusAddr, outcome, generation);
      if (this.inFlight === 0) {
        const waiters = this.drainWaiters;
        this.drainWaiters = [];
        for (const w of waiters) w();
      }
    });
  }

  /** Writes the status byte, returns the chain and interrupts if the driver wants it. */
  private complete(act: VirtioActivation, qi: number, q: Virtqueue, head: number, statusAddr: number | null, o: Outcome, generation: number): void {
    if (generation !== this.generation || this.activation !== act) return; // reset since: the driver forgot this request
    try {
      let used = o.written;
      if (statusAddr !== null) {
        act.memory.writeU8(statusAddr, o.status);
        used += 1;
      }
      q.addUsed(head, used);
      act.signalUsed(qi);
    } catch (e) {
      this.deviceError(act, e);
    }
  }

  /**
   * Validates a request (header + data descriptors, status excluded) and returns either a
   * status for an immediate completion, a write to queue (it may merge with its neighbours), or
   * the I/O to run.
   */
  private parse(mem: GuestMemory, acked: bigint, descs: Descriptor[]): number | QueuedWrite | (() => Promise<Outcome>) {
    const header = descs[0]!;
    if (header.writable || header.len < REQUEST_HEADER_SIZE) return VIRTIO_BLK_S_IOERR;
    const type = mem.readU32(header.addr);
    const sector = mem.readU64(header.addr + 8);
    // Bytes of the header descriptor past the 16-byte header are the start of the data (any layout).
    const data: Descriptor[] = [];
    if (header.len > REQUEST_HEADER_SIZE) data.push({ addr: header.addr + REQUEST_HEADER_SIZE, len: header.len - REQUEST_HEADER_SIZE, writable: false });
    data.push(...descs.slice(1));
    const total = data.reduce((n, d) => n + d.len, 0);
    const allWritable = data.every((d) => d.writable);
    const allReadable = data.every((d) => !d.writable);
    const ro = this.backend.readOnly;

    switch (type) {
      case VIRTIO_BLK_T_IN: {
        if (!allWritable || total % SECTOR_SIZE !== 0) return VIRTIO_BLK_S_IOERR;
        const offset = this.byteRange(sector, total);
        if (offset === null) return VIRTIO_BLK_S_IOERR;
        return async () => {
          let at = offset;
          for (const d of data) { await this.backend.read(at, mem.slice(d.addr, d.len)); at += d.len; }
          this.stats.read_ops++;
          this.stats.read_bytes += total;
          return { status: VIRTIO_BLK_S_OK, written: total };
        };
      }
      case VIRTIO_BLK_T_OUT: {
        if (ro || !allReadable || total % SECTOR_SIZE !== 0) return VIRTIO_BLK_S_IOERR;
        const offset = this.byteRange(sector, total);
        if (offset === null) return VIRTIO_BLK_S_IOERR;
        return new QueuedWrite(offset, total, data.map((d) => mem.slice(d.addr, d.len)));
      }
      case VIRTIO_BLK_T_FLUSH:
        if (total !== 0) return VIRTIO_BLK_S_IOERR;
        return async () => {
          await this.backend.flush();
          this.stats.flush_ops++;
          return statusOnly(VIRTIO_BLK_S_OK);
        };
      case VIRTIO_BLK_T_GET_ID: {
        if (!allWritable || total === 0) return VIRTIO_BLK_S_IOERR;
        const id = new Uint8Array(VIRTIO_BLK_ID_BYTES);
        new TextEncoder().encodeInto(this.serial, id);
        let written = 0;
        for (const d of data) {
          const n = Math.min(d.len, VIRTIO_BLK_ID_BYTES - written);
          if (n <= 0) break;
          mem.write(d.addr, id.subarray(written, written + n));
          written += n;
        }
        return async () => ({ status: VIRTIO_BLK_S_OK, written });
      }
      case VIRTIO_BLK_T_DISCARD:
      case VIRTIO_BLK_T_WRITE_ZEROES:
        return this.parseRanges(mem, acked, type, data, total, allReadable, ro);
      default:
        return VIRTIO_BLK_S_UNSUPP;
    }
  }

  private parseRanges(mem: GuestMemory, acked: bigint, type: number, data: Descriptor[], total: number, allReadable: boolean, ro: boolean): number | (() => Promise<Outcome>) {
    const discard = type === VIRTIO_BLK_T_DISCARD;
    const feature = discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES;
    if (!(acked & bit(feature))) return VIRTIO_BLK_S_UNSUPP;
    if (ro || !allReadable || total === 0 || total % DISCARD_SEGMENT_SIZE !== 0) return VIRTIO_BLK_S_IOERR;
    const count = total / DISCARD_SEGMENT_SIZE;
    if (count > MAX_DISCARD_SEG) return VIRTIO_BLK_S_IOERR;
    // Gather the segment array across descriptors, then check every segment before any I/O.
    const raw = new Uint8Array(total);
    let at = 0;
    for (const d of data) { raw.set(mem.slice(d.addr, d.len), at); at += d.len; }
    const view = new DataView(raw.buffer);
    const ranges: Array<{ offset: number; length: number; unmap: boolean }> = [];
    for (let i = 0; i < count; i++) {
      const sector = view.getBigUint64(i * 16, true);
      const sectors = view.getUint32(i * 16 + 8, true);
      const flags = view.getUint32(i * 16 + 12, true);
      // §5.2.6.2: unknown flags, and unmap on a discard, are UNSUPP.
      if (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP || (discard && flags !== 0)) return VIRTIO_BLK_S_UNSUPP;
      if (sectors > MAX_DISCARD_SECTORS) return VIRTIO_BLK_S_IOERR;
      const offset = this.byteRange(sector, sectors * SECTOR_SIZE);
      if (offset === null) return VIRTIO_BLK_S_IOERR;
      ranges.push({ offset, length: sectors * SECTOR_SIZE, unmap: (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) !== 0 });
    }
    return async () => {
      for (const r of ranges) {
        if (discard) await this.backend.discard(r.offset, r.length);
        else await this.backend.writeZeroes(r.offset, r.length, r.unmap);
      }
      if (discard) this.stats.discard_ops++;
      else this.stats.write_zeroes_ops++;
      return statusOnly(VIRTIO_BLK_S_OK);
    };
  }

  /** Byte offset of `sector` when [sector, sector + bytes) lies inside the disk, else null. */
  private byteRange(sector: bigint, bytes: number): number | null {
    const start = sector * BigInt(SECTOR_SIZE);
    if (start + BigInt(bytes) > BigInt(this.capacitySectors) * BigInt(SECTOR_SIZE)) return null;
    return Number(start);
  }
}
