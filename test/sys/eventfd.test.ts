import { describe, expect, it } from 'vitest';
import { EventFd } from '../../src/sys/eventfd.js';

describe('EventFd', () => {
  it('adds writes and resets on read', () => {
    const e = EventFd.create();
    e.write(3n);
    e.write(4);
    expect(e.read()).toBe(7n);
    e.close();
  });

  it('non-blocking read of a zero counter gives 0n', () => {
    const e = EventFd.create({ nonBlocking: true });
    expect(e.read()).toBe(0n);
    e.write(1n);
    expect(e.read()).toBe(1n);
    e.close();
  });

  it('semaphore mode reads one at a time', () => {
    const e = EventFd.create({ semaphore: true, initial: 2 });
    expect(e.read()).toBe(1n);
    expect(e.read()).toBe(1n);
    e.close();
  });

  it('readAsync waits off-thread while the event loop keeps running', async () => {
    const e = EventFd.create();
    const pending = e.readAsync();
    let ticks = 0;
    await new Promise<void>((resolve) => {
      const t = setInterval(() => { if (++ticks === 3) { clearInterval(t); resolve(); } }, 5);
    });
    expect(ticks).toBe(3); // the loop ran while the read was blocked
    e.write(5n);
    expect(await pending).toBe(5n);
    e.close();
  });

  it('close() wakes pending readAsync calls, which resolve null, then closes the fd', async () => {
    const e = EventFd.create();
    const a = e.readAsync();
    const b = e.readAsync();
    await new Promise((r) => setTimeout(r, 20));
    e.close();
    expect(await a).toBeNull();
    expect(await b).toBeNull();
    expect(await e.readAsync()).toBeNull();
    expect(() => e.write(1n)).toThrow(/closed/);
  });
});
