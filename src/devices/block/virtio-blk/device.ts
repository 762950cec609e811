import { BlockError, type BlockBackend } from '../../../block/backend.js';
import { MAX_WRITEV_PARTS } from '../../../block/host-file.js';
import type { GuestMemory } from '../../../memory/guest-memory.js';
import type { Descriptor } from '../../virtio/chain.js';
import type { Virtqueue } from '../../virtio/queue.js';
import {
  VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, bit, readConfigSpace,
  type VirtioActivation, type VirtioDevice,
} from '../../virtio/device.js';
import { checkSameDisk, parseVirtioBlkState, stateError, type VirtioBlkState } from './persist.js';
import { parseRequest, type BlkRange, type BlkRequest } from './request.js';
import {
  DEFAULT_QUEUE_SIZE, SECTOR_SIZE, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
  VIRTIO_ID_BLOCK, configSpace,
} from './spec.js';

/**
 * What vm.counters reports per disk, in Cloud Hypervisor's names. Latencies are of the reads and
 * writes that succeeded, from the moment the device started the request to its completion by the
 * backend, in microseconds (0 until there is one).
 */
export interface VirtioBlkCounters {
  read_ops: number;
  read_bytes: number;
  write_ops: number;
  write_bytes: number;
  flush_ops: number;
  discard_ops: number;
  write_zeroes_ops: number;
  errors: number;
  read_latency_min: number;
  read_latency_max: number;
  read_latency_avg: number;
  write_latency_min: number;
  write_latency_max: number;
  write_latency_avg: number;
}

/** Minimum, maximum and mean of a series of request latencies, in microseconds. */
class LatencyStats {
  private min = Infinity;
  private max = 0;
  private sum = 0;
  private count = 0;

  /** One request that started at `startMs` (performance.now()) has completed. */
  record(startMs: number): void {
    const us = Math.max(0, (performance.now() - startMs) * 1000);
    this.min = Math.min(this.min, us);
    this.max = Math.max(this.max, us);
    this.sum += us;
    this.count++;
  }

  report(): { min: number; max: number; avg: number } {
    if (this.count === 0) return { min: 0, max: 0, avg: 0 };
    return { min: Math.round(this.min), max: Math.round(this.max), avg: Math.round(this.sum / this.count) };
  }
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
interface QueuedWrite {
  head: number;
  statusAddr: number;
  offset: number;
  total: number;
  parts: Uint8Array[];
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
  private capacity: number;

  private config: Uint8Array;
  private activation: VirtioActivation | null = null;
  /** Bumped by reset: completions of an older generation are not written to the guest. */
  private generation = 0;
  private inFlight = 0;
  private paused = false;
  private drainWaiters: Array<() => void> = [];
  private readonly stats = {
    read_ops: 0, read_bytes: 0, write_ops: 0, write_bytes: 0, flush_ops: 0, discard_ops: 0, write_zeroes_ops: 0, errors: 0,
  };
  private readonly readLatency = new LatencyStats();
  private readonly writeLatency = new LatencyStats();

  constructor(private backend: BlockBackend, private readonly options: VirtioBlkOptions = {}) {
    const queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE;
    if (!Number.isInteger(queueSize) || queueSize < 4 || queueSize > 32768 || (queueSize & (queueSize - 1)) !== 0) {
      throw new RangeError(`virtio-blk queue size ${queueSize} is not a power of two in [4, 32768]`);
    }
    this.queueMaxSizes = [queueSize];
    this.serial = options.serial ?? '';
    if (!/^[\x20-\x7e]{0,20}$/.test(this.serial)) throw new RangeError(`virtio-blk serial "${this.serial}" must be at most 20 printable ASCII characters`);
    this.capacity = Math.floor(backend.size / SECTOR_SIZE);
    let f = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX) | bit(VIRTIO_F_INDIRECT_DESC)
      | bit(VIRTIO_BLK_F_SIZE_MAX) | bit(VIRTIO_BLK_F_SEG_MAX) | bit(VIRTIO_BLK_F_BLK_SIZE) | bit(VIRTIO_BLK_F_FLUSH);
    if (backend.readOnly) f |= bit(VIRTIO_BLK_F_RO);
    else f |= bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES);
    this.deviceFeatures = f;
    this.config = configSpace(this.capacity, queueSize);
  }

  /** The disk's size in 512-byte sectors, as the driver reads it from the configuration space. */
  get capacitySectors(): number {
    return this.capacity;
  }

  /**
   * The image under the device was resized: the configuration space shows the new capacity. Only
   * between drain() and resumeProcessing() (no request checked against the old size runs on); the
   * caller then tells the driver through the transport's configuration-change interrupt.
   */
  capacityChanged(): void {
    if (!this.paused || this.inFlight !== 0) throw new BlockError('virtio-blk: cannot change the capacity while requests may run (drain() first)');
    this.capacity = Math.floor(this.backend.size / SECTOR_SIZE);
    this.config = configSpace(this.capacity, this.queueMaxSizes[0]!);
  }

  counters(): VirtioBlkCounters {
    const r = this.readLatency.report();
    const w = this.writeLatency.report();
    return {
      ...this.stats,
      read_latency_min: r.min, read_latency_max: r.max, read_latency_avg: r.avg,
      write_latency_min: w.min, write_latency_max: w.max, write_latency_avg: w.avg,
    };
  }

  // ---- VirtioDevice ----------------------------------------------------------------------

  readConfig(offset: number, data: Uint8Array): void {
    readConfigSpace(this.config, offset, data);
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
    const state = parseVirtioBlkState(s);
    const dev = (() => {
      try {
        return new VirtioBlk(args.backend, { serial: state.serial, queueSize: state.queueSize, ...(args.onError ? { onError: args.onError } : {}) });
      } catch (e) {
        return stateError(e instanceof Error ? e.message : String(e));
      }
    })();
    checkSameDisk(state, dev.capacitySectors, args.backend.readOnly);
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
    const request = parseRequest(act.memory, act.ackedFeatures, descs.slice(0, -1), this.disk);
    if (request.kind === 'refused') {
      this.stats.errors++;
      this.complete(act, qi, q, head, status.addr, statusOnly(request.status), this.generation);
      return;
    }
    if (request.kind === 'write') {
      writes.push({ head, statusAddr: status.addr, offset: request.offset, total: request.total, parts: request.parts });
      return;
    }
    // Writes queued before this request start before it, as the guest ordered them.
    this.startWrites(act, qi, q, writes.splice(0));
    this.track(act, qi, q, head, status.addr, this.run(act.memory, request));
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
    const start = performance.now();
    await io();
    this.writeLatency.record(start);
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

  /** What request parsing needs to know of the device. */
  private get disk(): { capacitySectors: number; readOnly: boolean; serial: string } {
    return { capacitySectors: this.capacitySectors, readOnly: this.backend.readOnly, serial: this.serial };
  }

  /** Runs a parsed request other than a write (writes are queued: startWrites). */
  private async run(mem: GuestMemory, request: Exclude<BlkRequest, { kind: 'refused' } | { kind: 'write' }>): Promise<Outcome> {
    switch (request.kind) {
      case 'read':
        return this.read(mem, request.offset, request.total, request.buffers);
      case 'flush':
        await this.backend.flush();
        this.stats.flush_ops++;
        return statusOnly(VIRTIO_BLK_S_OK);
      case 'get-id':
        return { status: VIRTIO_BLK_S_OK, written: request.written };
      case 'discard':
      case 'write-zeroes':
        return this.zeroRanges(request.kind === 'discard', request.ranges);
    }
  }

  private async read(mem: GuestMemory, offset: number, total: number, buffers: Descriptor[]): Promise<Outcome> {
    const start = performance.now();
    let at = offset;
    for (const d of buffers) {
      // Marked once the read has landed (or failed part-way): a dirty log taken while it is in
      // flight must still see these pages written afterwards.
      try { await this.backend.read(at, mem.slice(d.addr, d.len)); } finally { mem.markDirty(d.addr, d.len); }
      at += d.len;
    }
    this.readLatency.record(start);
    this.stats.read_ops++;
    this.stats.read_bytes += total;
    return { status: VIRTIO_BLK_S_OK, written: total };
  }

  private async zeroRanges(discard: boolean, ranges: BlkRange[]): Promise<Outcome> {
    for (const r of ranges) {
      if (discard) await this.backend.discard(r.offset, r.length);
      else await this.backend.writeZeroes(r.offset, r.length, r.unmap);
    }
    if (discard) this.stats.discard_ops++;
    else this.stats.write_zeroes_ops++;
    return statusOnly(VIRTIO_BLK_S_OK);
  }
}
