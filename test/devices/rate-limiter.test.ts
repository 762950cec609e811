import { describe, expect, it } from 'vitest';
import { RateLimiter, TokenBucket } from '../../src/devices/rate-limiter.js';

describe('token bucket', () => {
  it('starts full, refills continuously at size / refill_time, never above size', () => {
    let now = 0;
    const b = new TokenBucket({ size: 1000, refill_time: 100 }, () => now);
    expect(b.available()).toBe(1000);
    b.consume(1000);
    expect(b.available()).toBe(0);
    expect(b.msUntil(1)).toBe(1);
    expect(b.msUntil(500)).toBe(50);
    now = 25;
    expect(b.available()).toBe(250);
    now = 10_000;
    expect(b.available()).toBe(1000);
  });

  it('spends the one-time burst first and never gets it back', () => {
    let now = 0;
    const b = new TokenBucket({ size: 10, refill_time: 1000, one_time_burst: 5 }, () => now);
    expect(b.available()).toBe(15);
    b.consume(12);
    expect(b.available()).toBe(3);
    now = 5000;
    expect(b.available()).toBe(10);
  });
});

describe('rate limiter', () => {
  it('buckets of size 0 or refill_time 0 limit nothing', () => {
    expect(RateLimiter.limits(undefined)).toBe(false);
    expect(RateLimiter.limits({ bandwidth: { size: 0, refill_time: 100 } })).toBe(false);
    expect(RateLimiter.limits({ ops: { size: 10, refill_time: 0 } })).toBe(false);
    expect(RateLimiter.limits({ ops: { size: 10, refill_time: 1 } })).toBe(true);
    expect(new RateLimiter({}).budget(4096)).toBe(4096);
  });

  it('gives a request what the bandwidth bucket holds, none while the ops bucket is empty, and says how long to wait', () => {
    let now = 0;
    const r = new RateLimiter({ bandwidth: { size: 100, refill_time: 1000 }, ops: { size: 2, refill_time: 1000 } }, () => now);
    expect(r.budget(64)).toBe(64);
    r.consume(64);
    expect(r.budget(64)).toBe(36);
    r.consume(36);
    expect(r.budget(64)).toBe(0); // both buckets empty
    expect(r.msUntilReady()).toBe(500); // the ops bucket needs 500 ms for one request, bandwidth 10 ms for a byte
    now = 500;
    expect(r.budget(64)).toBe(50);
  });
});
