/**
 * Token-bucket rate limiting as Cloud Hypervisor's and Firecracker's `rate_limiter_config` has
 * it: a bandwidth bucket (tokens are bytes) and an ops bucket (tokens are requests), each with a
 * `size` (capacity), a `refill_time` in ms to fill it from empty (tokens come back continuously,
 * size / refill_time per ms) and a `one_time_burst` of extra tokens at start that never come back.
 * A bucket of size 0 or refill_time 0 does not limit. The clock is injected so the arithmetic
 * is tested without waiting.
 */

export interface TokenBucketConfig {
  readonly size: number;
  readonly one_time_burst?: number;
  readonly refill_time: number;
}

export interface RateLimiterConfig {
  readonly bandwidth?: TokenBucketConfig;
  readonly ops?: TokenBucketConfig;
}

export type Clock = () => number;

export class TokenBucket {
  private tokens: number;
  private burst: number;
  private last: number;

  constructor(private readonly config: TokenBucketConfig, private readonly now: Clock) {
    this.tokens = config.size;
    this.burst = config.one_time_burst ?? 0;
    this.last = now();
  }

  /** Whole tokens there now. */
  available(): number {
    this.refill();
    return Math.floor(this.burst + this.tokens);
  }

  /** Takes `n` tokens (at most what is available), the one-time burst first. */
  consume(n: number): void {
    this.refill();
    const fromBurst = Math.min(this.burst, n);
    this.burst -= fromBurst;
    this.tokens = Math.max(0, this.tokens - (n - fromBurst));
  }

  /** Milliseconds until `n` tokens are there (0 if they are now). */
  msUntil(n: number): number {
    const missing = n - (this.burst + this.tokensNow());
    return missing <= 0 ? 0 : Math.ceil((missing * this.config.refill_time) / this.config.size);
  }

  private tokensNow(): number {
    this.refill();
    return this.tokens;
  }

  private refill(): void {
    const t = this.now();
    const elapsed = Math.max(0, t - this.last);
    this.last = t;
    this.tokens = Math.min(this.config.size, this.tokens + (elapsed * this.config.size) / this.config.refill_time);
  }
}

function limits(b: TokenBucketConfig | undefined): b is TokenBucketConfig {
  return b !== undefined && b.size > 0 && b.refill_time > 0;
}

export class RateLimiter {
  private readonly bandwidth: TokenBucket | undefined;
  private readonly ops: TokenBucket | undefined;

  constructor(config: RateLimiterConfig, now: Clock = () => performance.now()) {
    this.bandwidth = limits(config.bandwidth) ? new TokenBucket(config.bandwidth, now) : undefined;
    this.ops = limits(config.ops) ? new TokenBucket(config.ops, now) : undefined;
  }

  /** Whether the config limits anything (buckets of size or refill_time 0 do not). */
  static limits(config: RateLimiterConfig | undefined): boolean {
    return config !== undefined && (limits(config.bandwidth) || limits(config.ops));
  }

  /** Bytes one request may have now, at most `wanted`: 0 means wait (msUntilReady). */
  budget(wanted: number): number {
    if (this.ops !== undefined && this.ops.available() < 1) return 0;
    return this.bandwidth === undefined ? wanted : Math.min(wanted, this.bandwidth.available());
  }

  /** Accounts a request of `bytes`. */
  consume(bytes: number): void {
    this.bandwidth?.consume(bytes);
    this.ops?.consume(1);
  }

  /** Milliseconds until a request of at least one byte may go. */
  msUntilReady(): number {
    return Math.max(this.ops?.msUntil(1) ?? 0, this.bandwidth?.msUntil(1) ?? 0);
  }
}
