/**
 * virtio-rng (virtio 1.x §5.4): one request queue; the driver posts device-writable buffers and
 * the device fills them with bytes from the host's entropy source (Cloud Hypervisor's `--rng
 * src=`, /dev/urandom by default). The device keeps no state of its own: its queue is the
 * transport's, so a snapshot holds nothing here, and buffers posted before a snapshot are filled
 * after the restore. With a rate limiter (Cloud Hypervisor's `rate_limiter_config` shape) a
 * request gets what the buckets allow now, at least one byte: the rest of the queue waits for a
 * timer, never the VMM.
 */
import type { VirtioActivation, VirtioDevice } from '../../virtio/device.js';
import { VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, bit } from '../../virtio/device.js';
import { DeviceStateError } from '../../errors.js';
import type { RateLimiter } from '../../rate-limiter.js';

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
  /** Limits bytes and requests per second; absent: unlimited. */
  rateLimiter?: RateLimiter;
}

/** `throttled`: times a waiting request had to wait for the rate limiter. */
export type VirtioRngCounters = { bytes: number; requests: number; throttled: number };

export class VirtioRng implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_RNG;
  readonly queueMaxSizes = [QUEUE_SIZE];
  readonly deviceFeatures = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC);
  private activation: VirtioActivation | null = null;
  private paused = false;
  private readonly stats: VirtioRngCounters = { bytes: 0, requests: 0, throttled: 0 };
  /** Serves the queue again once the rate limiter allows (set while requests wait). */
  private retry: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly options: VirtioRngOptions) {}

  counters(): VirtioRngCounters {
    return { ...this.stats };
  }

  /** Stops serving requests (VM pause and snapshot); the queue stays as the guest left it. */
  pause(): void {
    this.paused = true;
    this.cancelRetry();
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
    this.cancelRetry();
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
    const limiter = this.options.rateLimiter;
    try {
      let used = false;
      while (q.pending() > 0) {
        let budget = limiter === undefined ? MAX_REQUEST_BYTES : limiter.budget(MAX_REQUEST_BYTES);
        if (budget === 0) {
          this.waitForTokens(limiter!);
          break;
        }
        const chain = q.popChain()!;
        let written = 0;
        for (const d of chain) {
          if (!d.writable || budget === 0) continue; // the device only writes device-writable buffers
          const n = Math.min(d.len, budget);
          this.options.fill(act.memory.slice(d.addr, n));
          act.memory.markDirty(d.addr, n);
          written += n;
          budget -= n;
        }
        limiter?.consume(written);
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

  private waitForTokens(limiter: RateLimiter): void {
    if (this.retry !== undefined) return;
    this.stats.throttled++;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.serve();
    }, Math.max(1, limiter.msUntilReady()));
    this.retry.unref();
  }

  private cancelRetry(): void {
    clearTimeout(this.retry);
    this.retry = undefined;
  }
}
