import type { GuestMemory } from '../../memory/guest-memory.js';
import type { Virtqueue } from './queue.js';

/** Transport-independent feature bits (virtio 1.x §6). Features are 64-bit: bigint. */
export const VIRTIO_F_INDIRECT_DESC = 28n;
export const VIRTIO_F_EVENT_IDX = 29n;
export const VIRTIO_F_VERSION_1 = 32n;

export const bit = (n: bigint): bigint => 1n << n;

/** Device status bits (§2.1). */
export const STATUS_ACKNOWLEDGE = 0x01;
export const STATUS_DRIVER = 0x02;
export const STATUS_DRIVER_OK = 0x04;
export const STATUS_FEATURES_OK = 0x08;
export const STATUS_DEVICE_NEEDS_RESET = 0x40;
export const STATUS_FAILED = 0x80;

/** Reads `data.length` bytes at `offset` of the configuration space `config`; bytes outside it read 0. */
export function readConfigSpace(config: Uint8Array, offset: number, data: Uint8Array): void {
  data.fill(0);
  for (let i = 0; i < data.length; i++) {
    const at = offset + i;
    if (at >= 0 && at < config.length) data[i] = config[at]!;
  }
}

/** What a transport hands a device when the driver sets DRIVER_OK. */
export interface VirtioActivation {
  readonly memory: GuestMemory;
  /** One per queue the device declared; a queue the driver did not enable has `ready === false`. */
  readonly queues: readonly Virtqueue[];
  readonly ackedFeatures: bigint;
  /** Call after adding used elements to queue `index`: interrupts the driver if it wants one. */
  signalUsed(index: number): void;
  /**
   * The driver broke the protocol (or the device cannot go on): sets DEVICE_NEEDS_RESET and
   * raises a configuration-change interrupt. The device must stop using its queues.
   */
  deviceError(reason: string): void;
}

/**
 * A virtio device as a transport (virtio-mmio here) drives it: identity, features, config space,
 * activation with configured queues, queue notifications, reset. Devices never throw out of these
 * methods because of guest behaviour; they report through `deviceError` instead.
 */
export interface VirtioDevice {
  /** Virtio device ID (§5): 2 = block. */
  readonly deviceType: number;
  /** Maximum size of each queue; the length is the number of queues. */
  readonly queueMaxSizes: readonly number[];
  /** Offered features, including VIRTIO_F_VERSION_1 and the ring features it supports. */
  readonly deviceFeatures: bigint;
  /** Reads `data.length` bytes of device configuration at `offset`; bytes past the end read 0. */
  readConfig(offset: number, data: Uint8Array): void;
  writeConfig(offset: number, data: Uint8Array): void;
  activate(activation: VirtioActivation): void;
  /** The driver made buffers available on queue `index` (MMIO QueueNotify or an ioeventfd). */
  queueNotify(index: number): void;
  /** Device reset: forget the activation; completions of I/O already in flight are dropped. */
  reset(): void;
  /** Device-specific, JSON-safe state (configuration, not in-flight I/O). */
  state(): unknown;
}
