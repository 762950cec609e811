import type { InterruptLine, MmioDevice, Snapshottable } from '../bus.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import { DeviceStateError } from '../errors.js';
import { Virtqueue, type QueueState } from './queue.js';
import {
  STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FAILED, STATUS_FEATURES_OK,
  VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, bit,
  type VirtioActivation, type VirtioDevice,
} from './device.js';

/** virtio-mmio register offsets (virtio 1.x §4.2.2), version 2 ("modern") only. */
export const MMIO_MAGIC_VALUE = 0x000;
export const MMIO_VERSION = 0x004;
export const MMIO_DEVICE_ID = 0x008;
export const MMIO_VENDOR_ID = 0x00c;
export const MMIO_DEVICE_FEATURES = 0x010;
export const MMIO_DEVICE_FEATURES_SEL = 0x014;
export const MMIO_DRIVER_FEATURES = 0x020;
export const MMIO_DRIVER_FEATURES_SEL = 0x024;
export const MMIO_QUEUE_SEL = 0x030;
export const MMIO_QUEUE_NUM_MAX = 0x034;
export const MMIO_QUEUE_NUM = 0x038;
export const MMIO_QUEUE_READY = 0x044;
export const MMIO_QUEUE_NOTIFY = 0x050;
export const MMIO_INTERRUPT_STATUS = 0x060;
export const MMIO_INTERRUPT_ACK = 0x064;
export const MMIO_STATUS = 0x070;
export const MMIO_QUEUE_DESC_LOW = 0x080;
export const MMIO_QUEUE_DESC_HIGH = 0x084;
export const MMIO_QUEUE_DRIVER_LOW = 0x090;
export const MMIO_QUEUE_DRIVER_HIGH = 0x094;
export const MMIO_QUEUE_DEVICE_LOW = 0x0a0;
export const MMIO_QUEUE_DEVICE_HIGH = 0x0a4;
export const MMIO_CONFIG_GENERATION = 0x0fc;
export const MMIO_CONFIG = 0x100;
export const MMIO_SIZE = 0x1000;

export const MMIO_MAGIC = 0x74726976; // "virt"
export const MMIO_VENDOR = 0x554d4551; // "QEMU", what Linux and Firecracker guests expect to see

export const INTERRUPT_USED_BUFFER = 0x1;
export const INTERRUPT_CONFIG_CHANGE = 0x2;

export interface VirtioMmioState {
  status: number;
  deviceFeaturesSel: number;
  driverFeaturesSel: number;
  /** Acked features as a hex string (64-bit values do not survive JSON numbers). */
  ackedFeatures: string;
  queueSel: number;
  interruptStatus: number;
  configGeneration: number;
  queues: QueueState[];
  device: unknown;
}

export interface VirtioMmioArgs {
  device: VirtioDevice;
  memory: GuestMemory;
  interrupt: InterruptLine;
  /** Called with the reason when the device enters DEVICE_NEEDS_RESET (for logs and events). */
  onDeviceError?: (reason: string) => void;
}

const u32 = (data: Uint8Array): number => new DataView(data.buffer, data.byteOffset, 4).getUint32(0, true);

/**
 * The virtio-mmio transport, modern interface (Version 2): a state machine over the register
 * window that negotiates features (FEATURES_OK only for a subset of the offered features that
 * includes VERSION_1), configures queues (writes ignored once a queue is ready or after
 * DRIVER_OK), activates the device at DRIVER_OK and raises interrupts through one InterruptLine.
 */
export class VirtioMmioTransport implements MmioDevice, Snapshottable<VirtioMmioState> {
  readonly device: VirtioDevice;
  private readonly memory: GuestMemory;
  private readonly interrupt: InterruptLine;
  private readonly onDeviceError: ((reason: string) => void) | undefined;
  private readonly queues: Virtqueue[];

  private status = 0;
  private deviceFeaturesSel = 0;
  private driverFeaturesSel = 0;
  private ackedFeatures = 0n;
  private queueSel = 0;
  private interruptStatus = 0;
  private configGeneration = 0;
  private activated = false;

  constructor(args: VirtioMmioArgs) {
    this.device = args.device;
    this.memory = args.memory;
    this.interrupt = args.interrupt;
    this.onDeviceError = args.onDeviceError;
    this.queues = args.device.queueMaxSizes.map((max) => new Virtqueue(args.memory, max));
  }

  get offeredFeatures(): bigint {
    return this.device.deviceFeatures | bit(VIRTIO_F_VERSION_1);
  }

  /** Current device status byte. */
  get deviceStatus(): number {
    return this.status;
  }

  /** A queue notification from outside the MMIO window (a KVM ioeventfd). */
  queueNotify(index: number): void {
    if (!this.activated || this.status & STATUS_DEVICE_NEEDS_RESET) return;
    if (!Number.isInteger(index) || index < 0 || index >= this.queues.length) return;
    this.device.queueNotify(index);
  }

  /**
   * The device's configuration changed (e.g. capacity): bump the generation and, once the driver
   * is running, interrupt (§2.1.2: no configuration-change notification before DRIVER_OK; a
   * driver that starts later reads the new configuration anyway).
   */
  configChanged(): void {
    this.configGeneration = (this.configGeneration + 1) >>> 0;
    if (this.status & STATUS_DRIVER_OK && !(this.status & STATUS_DEVICE_NEEDS_RESET)) this.raise(INTERRUPT_CONFIG_CHANGE);
  }

  mmioRead(offset: number, data: Uint8Array): void {
    data.fill(0);
    if (offset >= MMIO_CONFIG) {
      this.device.readConfig(offset - MMIO_CONFIG, data);
      return;
    }
    if (data.length !== 4 || offset % 4 !== 0) return; // registers are 32-bit only (§4.2.2.2)
    new DataView(data.buffer, data.byteOffset, 4).setUint32(0, this.readRegister(offset) >>> 0, true);
  }

  mmioWrite(offset: number, data: Uint8Array): void {
    if (offset >= MMIO_CONFIG) {
      // Config writes are only meaningful to a driver that finished negotiating.
      if (this.status & STATUS_DRIVER) this.device.writeConfig(offset - MMIO_CONFIG, data);
      return;
    }
    if (data.length !== 4 || offset % 4 !== 0) return;
    this.writeRegister(offset, u32(data));
  }

  private selectedQueue(): Virtqueue | undefined {
    return this.queues[this.queueSel];
  }

  private readRegister(offset: number): number {
    const q = this.selectedQueue();
    switch (offset) {
      case MMIO_MAGIC_VALUE: return MMIO_MAGIC;
      case MMIO_VERSION: return 2;
      case MMIO_DEVICE_ID: return this.device.deviceType;
      case MMIO_VENDOR_ID: return MMIO_VENDOR;
      case MMIO_DEVICE_FEATURES:
        return this.deviceFeaturesSel > 1 ? 0 : Number((this.offeredFeatures >> BigInt(32 * this.deviceFeaturesSel)) & 0xffff_ffffn);
      case MMIO_QUEUE_NUM_MAX: return q?.maxSize ?? 0;
      case MMIO_QUEUE_READY: return q?.ready ? 1 : 0;
      case MMIO_INTERRUPT_STATUS: return this.interruptStatus;
      case MMIO_STATUS: return this.status;
      case MMIO_CONFIG_GENERATION: return this.configGeneration;
      default: return 0; // write-only or reserved
    }
  }

  private writeRegister(offset: number, v: number): void {
    switch (offset) {
      case MMIO_DEVICE_FEATURES_SEL: this.deviceFeaturesSel = v; return;
      case MMIO_DRIVER_FEATURES_SEL: this.driverFeaturesSel = v; return;
      case MMIO_DRIVER_FEATURES: this.writeDriverFeatures(v); return;
      case MMIO_QUEUE_SEL: this.queueSel = v; return;
      case MMIO_QUEUE_NOTIFY: this.queueNotify(v); return;
      case MMIO_INTERRUPT_ACK: this.interruptStatus &= ~v; return;
      case MMIO_STATUS: this.writeStatus(v & 0xff); return;
      default: this.writeQueueRegister(offset, v);
    }
  }

  private writeDriverFeatures(v: number): void {
    // Features are frozen once FEATURES_OK is set; only the driver phase may write them.
    if (!(this.status & STATUS_DRIVER) || this.status & STATUS_FEATURES_OK || this.driverFeaturesSel > 1) return;
    const shift = BigInt(32 * this.driverFeaturesSel);
    this.ackedFeatures = (this.ackedFeatures & ~(0xffff_ffffn << shift)) | (BigInt(v >>> 0) << shift);
  }

  private writeQueueRegister(offset: number, v: number): void {
    const q = this.selectedQueue();
    if (q === undefined || this.status & STATUS_DRIVER_OK) return;
    // Before DRIVER_OK a driver may take a queue back (Linux's vm_del_vq on a failed probe).
    if (offset === MMIO_QUEUE_READY && (v & 1) === 0) { q.ready = false; return; }
    // §4.2.2.3: queue configuration may not change while the queue is ready or the device live.
    if (q.ready) return;
    const hi = v * 2 ** 32;
    const lo = (addr: number): number => Math.floor(addr / 2 ** 32) * 2 ** 32 + v;
    const high = (addr: number): number => hi + (addr % 2 ** 32);
    switch (offset) {
      case MMIO_QUEUE_NUM: q.size = v; return;
      case MMIO_QUEUE_DESC_LOW: q.descTable = lo(q.descTable); return;
      case MMIO_QUEUE_DESC_HIGH: q.descTable = high(q.descTable); return;
      case MMIO_QUEUE_DRIVER_LOW: q.availRing = lo(q.availRing); return;
      case MMIO_QUEUE_DRIVER_HIGH: q.availRing = high(q.availRing); return;
      case MMIO_QUEUE_DEVICE_LOW: q.usedRing = lo(q.usedRing); return;
      case MMIO_QUEUE_DEVICE_HIGH: q.usedRing = high(q.usedRing); return;
      case MMIO_QUEUE_READY:
        try {
          q.validate();
          q.ready = true;
        } catch (e) {
          this.fail(`queue ${this.queueSel}: ${e instanceof Error ? e.message : String(e)}`);
        }
        return;
      default: return;
    }
  }

  private writeStatus(v: number): void {
    if (v === 0) { this.reset(); return; }
    const old = this.status;
    // The driver only ever adds bits (§2.1.2); a write that clears one is ignored, except that
    // FAILED may be set at any time. DEVICE_NEEDS_RESET belongs to the device.
    const requested = v & ~STATUS_DEVICE_NEEDS_RESET;
    if ((old & ~STATUS_DEVICE_NEEDS_RESET & ~requested) !== 0) return;
    let next = requested | (old & STATUS_DEVICE_NEEDS_RESET);
    const added = next & ~old;
    if (added & STATUS_FEATURES_OK && !this.featuresAcceptable()) next &= ~STATUS_FEATURES_OK;
    if (added & STATUS_DRIVER_OK && !(next & STATUS_FEATURES_OK)) next &= ~STATUS_DRIVER_OK;
    this.status = next;
    if (added & STATUS_DRIVER_OK && next & STATUS_DRIVER_OK && !(next & STATUS_FAILED)) this.activate();
  }

  /** FEATURES_OK is refused for features not offered and when VERSION_1 is missing. */
  private featuresAcceptable(): boolean {
    if (this.ackedFeatures & ~this.offeredFeatures) return false;
    return (this.ackedFeatures & bit(VIRTIO_F_VERSION_1)) !== 0n;
  }

  private activate(): void {
    if (this.status & STATUS_DEVICE_NEEDS_RESET) return;
    for (const [i, q] of this.queues.entries()) {
      if (!q.ready) continue;
      try {
        q.validate();
      } catch (e) {
        this.fail(`queue ${i}: ${e instanceof Error ? e.message : String(e)}`);
        return;
      }
      q.eventIdx = (this.ackedFeatures & bit(VIRTIO_F_EVENT_IDX)) !== 0n;
      q.indirect = (this.ackedFeatures & bit(VIRTIO_F_INDIRECT_DESC)) !== 0n;
    }
    this.activated = true;
    this.device.activate(this.activation());
  }

  private activation(): VirtioActivation {
    return {
      memory: this.memory,
      queues: this.queues,
      ackedFeatures: this.ackedFeatures,
      signalUsed: (index: number) => this.signalUsed(index),
      deviceError: (reason: string) => this.fail(reason),
    };
  }

  private signalUsed(index: number): void {
    const q = this.queues[index];
    if (q === undefined || !this.activated) return;
    let wanted: boolean;
    try {
      wanted = q.needsNotification();
    } catch (e) {
      this.fail(e instanceof Error ? e.message : String(e));
      return;
    }
    if (wanted) this.raise(INTERRUPT_USED_BUFFER);
  }

  private raise(bits: number): void {
    this.interruptStatus |= bits;
    this.interrupt.trigger();
  }

  /** DEVICE_NEEDS_RESET plus a configuration-change interrupt (§2.1.1). */
  private fail(reason: string): void {
    if (this.status & STATUS_DEVICE_NEEDS_RESET) return;
    this.status |= STATUS_DEVICE_NEEDS_RESET;
    this.onDeviceError?.(reason);
    if (this.activated) {
      this.activated = false;
      this.device.reset();
    }
    this.raise(INTERRUPT_CONFIG_CHANGE);
  }

  private reset(): void {
    if (this.activated || this.status !== 0) this.device.reset();
    this.activated = false;
    this.status = 0;
    this.deviceFeaturesSel = this.driverFeaturesSel = 0;
    this.ackedFeatures = 0n;
    this.queueSel = 0;
    this.interruptStatus = 0;
    for (const q of this.queues) q.reset();
  }

  state(): VirtioMmioState {
    return {
      status: this.status,
      deviceFeaturesSel: this.deviceFeaturesSel,
      driverFeaturesSel: this.driverFeaturesSel,
      ackedFeatures: this.ackedFeatures.toString(16),
      queueSel: this.queueSel,
      interruptStatus: this.interruptStatus,
      configGeneration: this.configGeneration,
      queues: this.queues.map((q) => q.state()),
      device: this.device.state(),
    };
  }

  /**
   * Rebuilds the transport around an already restored `device` (from `state.device`), validates
   * everything a driver could have configured, re-activates a live device and re-raises pending
   * interrupts.
   */
  static fromState(args: VirtioMmioArgs, s: VirtioMmioState): VirtioMmioTransport {
    const name = `virtio-mmio(${args.device.deviceType})`;
    const bad = (m: string): never => { throw new DeviceStateError(name, m); };
    const isU32 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;
    if (typeof s !== 'object' || s === null) bad('state is not an object');
    if (!isU32(s.status) || s.status > 0xff) bad(`status ${String(s.status)} is not a byte`);
    for (const k of ['deviceFeaturesSel', 'driverFeaturesSel', 'queueSel', 'configGeneration'] as const) if (!isU32(s[k])) bad(`${k} is not a 32-bit value`);
    if (!isU32(s.interruptStatus) || s.interruptStatus > 3) bad(`interruptStatus ${String(s.interruptStatus)} has unknown bits`);
    if (typeof s.ackedFeatures !== 'string' || !/^[0-9a-f]{1,16}$/.test(s.ackedFeatures)) bad('ackedFeatures is not a 64-bit hex string');
    if (!Array.isArray(s.queues) || s.queues.length !== args.device.queueMaxSizes.length) bad(`expected ${args.device.queueMaxSizes.length} queues`);

    const t = new VirtioMmioTransport(args);
    const acked = BigInt(`0x${s.ackedFeatures}`);
    if (s.status & STATUS_FEATURES_OK && (acked & ~t.offeredFeatures || !(acked & bit(VIRTIO_F_VERSION_1)))) {
      bad(`acked features 0x${s.ackedFeatures} are not a VERSION_1 subset of the offered 0x${t.offeredFeatures.toString(16)}`);
    }
    if (s.status & STATUS_DRIVER_OK && !(s.status & STATUS_FEATURES_OK)) bad('DRIVER_OK without FEATURES_OK');
    s.queues.forEach((qs, i) => {
      if (qs?.maxSize !== args.device.queueMaxSizes[i]) bad(`queue ${i} max size ${String(qs?.maxSize)} differs from the device's ${String(args.device.queueMaxSizes[i])}`);
      t.queues[i] = Virtqueue.fromState(args.memory, qs, name);
    });
    t.status = s.status;
    t.deviceFeaturesSel = s.deviceFeaturesSel;
    t.driverFeaturesSel = s.driverFeaturesSel;
    t.ackedFeatures = acked;
    t.queueSel = s.queueSel;
    t.interruptStatus = s.interruptStatus;
    t.configGeneration = s.configGeneration;
    if (t.status & STATUS_DRIVER_OK && !(t.status & (STATUS_DEVICE_NEEDS_RESET | STATUS_FAILED))) {
      t.activated = true;
      t.device.activate(t.activation());
    }
    if (t.interruptStatus !== 0) t.interrupt.trigger();
    return t;
  }
}

