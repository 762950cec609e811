/**
 * virtio-rng (virtio 1.x §5.4): one request queue; the driver posts device-writable buffers and
 * the device fills them with bytes from the host's entropy source (Cloud Hypervisor's `--rng
 * src=`, /dev/urandom by default). The device keeps no state of its own: its queue is the
 * transport's, so a snapshot holds nothing here, and buffers posted before a snapshot are filled
 * after the restore.
 */
import type { VirtioActivation, VirtioDevice } from '../../virtio/device.js';
import { VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, bit } from '../../virtio/device.js';
import { DeviceStateError } from '../../errors.js';

export const VIRTIO_ID_RNG = 4;
const QUEUE_SIZE = 256;
/**
 * Bytes one request may ask for: a guest posting a huge buffer gets this much (the used length
 * says so, as the spec allows) rather than making the VMM read gigabytes at once.
 */
export const MAX_REQUEST_BYTES = 64 * 1024;

export interface VirtioRngOptions {
  /** Fills all of `buf` from the entropy source (throws if it cannot). */
  fill(buf: Uint8Array): void;
  onError?(message: string): void;
}

export type VirtioRngCounters = { bytes: number; requests: number };

export class VirtioRng implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_RNG;
  readonly queueMaxSizes = [QUEUE_SIZE];
  readonly deviceFeatures = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC);
  private activation: VirtioActivation | null = null;
  private paused = false;
  private readonly stats: VirtioRngCounters = { bytes: 0, requests: 0 };

  constructor(private readonly options: VirtioRngOptions) {}

  counters(): VirtioRngCounters {
    return { ...this.stats };
  }

  /** Stops serving requests (VM pause and snapshot); the queue stays as the guest left it. */
  pause(): void {
    this.paused = true;
  }

  unpause(): void {
    this.paused = false;
    this.serve();
  }

  readConfig(_offset: number, data: Uint8Array): void {
    data.fill(0); // no configuration space
  }

  writeConfig(): void {}

  activate(activation: VirtioActivation): void {
    this.activation = activation;
    this.serve();
  }

  queueNotify(): void {
    this.serve();
  }

  reset(): void {
    this.activation = null;
  }

  state(): Record<string, never> {
    return {};
  }

  /** Restored paused, like the other devices of a restored VM: requests are served at resume. */
  static fromState(options: VirtioRngOptions, s: unknown): VirtioRng {
    if (typeof s !== 'object' || s === null || Array.isArray(s) || Object.keys(s).length !== 0) {
      throw new DeviceStateError('virtio-rng', 'state must be an empty object');
    }
    const dev = new VirtioRng(options);
    dev.paused = true;
    return dev;
  }

  private serve(): void {
    const act = this.activation;
    if (act === null || this.paused) return;
    const q = act.queues[0];
    if (q === undefined || !q.ready) return;
    try {
      let used = false;
      for (let chain = q.popChain(); chain !== null; chain = q.popChain()) {
        let budget = MAX_REQUEST_BYTES;
        let written = 0;
        for (const d of chain) {
          if (!d.writable || budget === 0) continue; // the device only writes device-writable buffers
          const n = Math.min(d.len, budget);
          this.options.fill(act.memory.slice(d.addr, n));
          written += n;
          budget -= n;
        }
        q.addUsed(chain.head, written);
        this.stats.requests++;
        this.stats.bytes += written;
        used = true;
      }
      if (used) act.signalUsed(0);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      this.options.onError?.(`virtio-rng: ${msg}`);
      this.activation = null;
      act.deviceError(msg);
    }
  }
}
